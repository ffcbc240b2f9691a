/**
 * `npm run bench:grab`: grab-svc's throughput and latency next to a bare grpc-js echo server,
 * both driven by the same load generator in the same run, plus Redis calls per grab and the
 * effect of campaign size; the grab's latency at half its maximum rate (open loop, fixed
 * arrival schedule); creating 1,000,000 packets next to redis-benchmark pushing as many. Figures,
 * not a test. Env: BENCH_REQUESTS, BENCH_CONCURRENCY, BENCH_ROUNDS, REDIS_URL, BENCH_NODE_FLAGS, BENCH_CHILD_LOG
 * (a file the servers' output is appended to), REDIS_DURABILITY (grab-svc's; none unless set,
 * as the shared development Redis keeps no AOF: `npm run bench:durability` measures the policies);
 * BENCH_DURABILITY=aof (the shipped policy) adds, next to each unprotected grab round, a round on a
 * second grab-svc with REDIS_DURABILITY=aof on a redis-server of the bench's own with `appendfsync
 * always` (issue 16's goal 5). grab-svc runs with gc-window.js preloaded: its longest GC pause in
 * the open-loop run and the bytes V8 allocated per grab in the measured rounds.
 * `--json` prints the figures as one JSON object on stdout (the table goes to stderr), with the
 * snake_case keys of issue 16's goals first; `--profile` adds a run of a grab-svc under
 * `node --cpu-prof` and prints where its CPU went (self time by function and by package).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { credentials } from '@grpc/grpc-js';
import { createRedis, keys } from '@redpacket/lib';
import { bearer, deleteKeys, startRedisServer, testSigner } from '@redpacket/lib/testing';
import {
  cpuTimeMs,
  ECHO_PATH,
  echoServerScript,
  freePort,
  grpcFrame,
  h2load,
  loadAverageLine,
  runLoad,
  spawnNode,
  summarizeCpuProfile,
  type Child,
  type LoadReport,
  type ProfileSummary,
  type PreparedRequest,
} from '@redpacket/loadgen';
import { createPool, DEFAULT_MYSQL_URL } from '@redpacket/db';
import { AdminServiceClient, GrabRequest, Outcome } from '@redpacket/proto';
import Table from 'cli-table3';
import { DEFAULT_DURABILITY } from '@redpacket/grab-svc/durability';
import { GRAB_NODE_FLAGS } from '@redpacket/grab-svc/node-flags';
import { benchDurability, createBenchCampaign } from './bench-campaign.js';
import type { GcWindowReport } from './gc-window.js';

const N = Number(process.env['BENCH_REQUESTS'] ?? 60_000);
const C = Number(process.env['BENCH_CONCURRENCY'] ?? 200);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 3);
const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const DURABILITY = benchDurability(process.env);
/** grab-svc's MySQL (it inherits this environment): campaigns are funded there before they are created. */
const MYSQL_URL = process.env['MYSQL_URL'] ?? DEFAULT_MYSQL_URL;
/** BENCH_DURABILITY=aof: also grab through a grab-svc with the shipped policy on an AOF-always Redis. */
const SHIPPED = process.env['BENCH_DURABILITY'] === DEFAULT_DURABILITY;
if (process.env['BENCH_DURABILITY'] !== undefined && !SHIPPED)
  throw new Error(`BENCH_DURABILITY: only ${DEFAULT_DURABILITY} (the shipped policy) is measured here`);
const GRAB_PATH = '/redpacket.v1.GrabService/Grab';
const run = randomBytes(3).toString('hex');
const PROFILE = process.argv.includes('--profile');
/** grab-svc's V8 flags: its npm start's, or BENCH_NODE_FLAGS (space-separated; empty for none) to compare. */
const NODE_FLAGS =
  process.env['BENCH_NODE_FLAGS'] === undefined
    ? GRAB_NODE_FLAGS
    : process.env['BENCH_NODE_FLAGS'].split(' ').filter(Boolean);
/**
 * redis-benchmark's baseline for campaign creation: one connection like the service's, this
 * many RPUSH commands per round trip (it can only push one value a command with -t rpush).
 */
const RB_PIPELINE = 1000;
/** Streams the open-loop run may have in flight: independent users do not wait for each other. */
const OPEN_LOOP_STREAMS = 2000;

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const fmt = (n: number, d = 0): string =>
  n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

async function commandCalls(redis: ReturnType<typeof createRedis>): Promise<Record<string, number>> {
  const info = await redis.info('commandstats');
  const out: Record<string, number> = {};
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

/** Redis's own CPU seconds so far (INFO cpu): per grab, what the server under test adds on the same cores. */
async function redisCpuSeconds(redis: ReturnType<typeof createRedis>): Promise<number> {
  const info = await redis.info('cpu');
  const get = (k: string): number => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
  return get('used_cpu_user') + get('used_cpu_sys');
}

/**
 * `redis-benchmark -t rpush`'s workload (1,000,000 single-value RPUSH to one list) against the
 * bench's own Redis database and a key of this run, with a packet-sized value; returns the ms.
 */
async function redisBenchmarkRpush(count: number): Promise<number> {
  const u = new URL(REDIS_URL);
  const db = u.pathname.slice(1) || '0';
  const key = `rp-bench:${run}:rpush`;
  const args = ['-h', u.hostname, '-p', u.port || '6379', '--dbnum', db, '-n', String(count), '-c', '1'];
  args.push('-P', String(RB_PIPELINE), '-q', 'rpush', key, 'AAAAAAAAAAAAAAAA|12345');
  if (u.password) args.push('-a', decodeURIComponent(u.password));
  const t0 = performance.now();
  try {
    await promisify(execFile)('redis-benchmark', args);
  } catch (e) {
    throw new Error(`redis-benchmark failed (apt-get install redis-tools): ${(e as Error).message}`, { cause: e });
  }
  const ms = performance.now() - t0;
  const redis = createRedis({ url: REDIS_URL });
  const len = await redis.llen(key);
  await redis.del(key);
  await redis.quit();
  if (len !== count) throw new Error(`redis-benchmark pushed ${len} values, expected ${count}`);
  return ms;
}

type Redis = ReturnType<typeof createRedis>;

/** One grab-svc under load: its process, port, the Redis it uses, and its GC windows. */
interface GrabTarget {
  child: Child;
  port: number;
  /** A connection to the grab-svc's Redis, for INFO. */
  redis: Redis;
  durability: string;
  /** Creates a campaign of packetCount packets through this grab-svc; how long CreateCampaign took. */
  create(packetCount: number): Promise<{ id: string; ms: number }>;
  /** Runs `work` inside a GC window of this grab-svc (gc-window.ts): its pauses and allocation. */
  gcWindow<T>(work: () => Promise<T>): Promise<{ result: T; gc: GcWindowReport }>;
  close(): Promise<void>;
}

/** The servers under load, and what every scenario needs to drive them. */
interface Bench {
  echo: Child;
  echoPort: number;
  /** The unprotected grab-svc on REDIS_URL (REDIS_DURABILITY none unless set). */
  grab: GrabTarget;
  /** BENCH_DURABILITY=aof: a grab-svc with the shipped policy on an AOF-always Redis of its own. */
  shipped: GrabTarget | undefined;
  /** N users' tokens, verified by grab-svc in the warm-up; then the cold ones, never seen. */
  tokens: string[];
  coldTokens: string[];
  /** Creates a campaign of packetCount packets on the unprotected grab-svc. */
  create(packetCount: number): Promise<{ id: string; ms: number }>;
  /** One Grab a token, spread over the campaigns round-robin. */
  requestsFor(campaignIds: string[], toks: string[]): PreparedRequest[];
  /** A closed-loop run, with the server process's own CPU per call (grab paths: on `target`, default grab). */
  load(path: string, requests: PreparedRequest[], target?: GrabTarget): Promise<LoadReport & { serverCpuUs: number }>;
  /** A run at `rps` requests/s (open loop), or closed loop with 0. */
  runLoadOn(path: string, requests: PreparedRequest[], rps?: number, target?: GrabTarget): Promise<LoadReport>;
}

const grabEnv = (port: number, redisUrl = REDIS_URL, durability = DURABILITY): Record<string, string> => ({
  GRPC_PORT: String(port),
  REDIS_URL: redisUrl,
  ...testSigner().env,
  LOG_LEVEL: 'info',
  REDIS_DURABILITY: durability,
  // The grab path alone: the outbox relay has its own benchmark (bench:relay), and here it
  // would publish every win of every round to the shared broker with nobody consuming them.
  RELAY_ENABLED: '0',
  SETTLE_EVERY_MS: '0',
});

/** Preloaded into every measured grab-svc: GC windows opened and closed by SIGUSR2. */
const GC_WINDOW = ['--import', new URL('./gc-window.js', import.meta.url).href];

/** Starts a grab-svc on `redisUrl`; `close` stops it and deletes the campaigns it created. */
async function startGrab(redisUrl: string, durability: string): Promise<GrabTarget> {
  const redis = createRedis({ url: redisUrl });
  const port = await freePort();
  const child = spawnNode(new URL('../main.js', import.meta.url), [], grabEnv(port, redisUrl, durability), [
    ...NODE_FLAGS,
    ...GC_WINDOW,
  ]);
  const created: string[] = [];
  const pool = createPool(MYSQL_URL, 2);
  const admin = new AdminServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
  const adminMd = bearer(await testSigner().sign({ userId: 'bench-ops', role: 'admin' }));
  let windows = 0;
  /** SIGUSR2, then the line gc-window.js answers with for window `n`. */
  const toggle = async (n: number, re: string): Promise<string> => {
    child.proc.kill('SIGUSR2');
    return child.waitFor(new RegExp(`^\\{"gcWindow":${n},${re}`), 30_000);
  };
  const target: GrabTarget = {
    child,
    port,
    redis,
    durability,
    async create(packetCount) {
      const c = await createBenchCampaign(admin, adminMd, { name: `bench ${run}`, packetCount, fundFrom: pool });
      created.push(c.id);
      return c;
    },
    async gcWindow(work) {
      const n = ++windows;
      await toggle(n, '"state":"open"');
      const result = await work();
      return { result, gc: JSON.parse(await toggle(n, '"gcs"')) as GcWindowReport };
    },
    async close() {
      admin.close();
      for (const id of created) {
        await deleteKeys(redis as never, `rp:{${id}}:*`);
        await redis.zrem(keys.campaigns, id);
      }
      await child.stop();
      await Promise.all([redis.quit(), pool.end()]);
    },
  };
  try {
    // migrate() waits up to 60 s for the migration lock another process on the MySQL may hold
    await child.waitFor(/gRPC server listening/, 90_000);
  } catch (err) {
    await target.close();
    throw err;
  }
  return target;
}

/**
 * The shipped durability policy's grab-svc: REDIS_DURABILITY=aof on a redis-server of the
 * bench's own with `appendfsync always`, its AOF in a temporary directory removed on close.
 */
async function startShippedGrab(): Promise<GrabTarget> {
  const dir = mkdtempSync(join(tmpdir(), 'grab-bench-aof-'));
  const server = await startRedisServer(await freePort(), { appendfsync: 'always', dir });
  try {
    const target = await startGrab(server.url, DEFAULT_DURABILITY);
    return {
      ...target,
      async close() {
        await target.close().finally(async () => {
          await server.stop();
          rmSync(dir, { recursive: true, force: true });
        });
      },
    };
  } catch (err) {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Starts echo and grab-svc (and the shipped one with BENCH_DURABILITY=aof); `close` stops them. */
async function startBench(): Promise<Bench & { close(): Promise<void> }> {
  const echoPort = await freePort();
  const echo = spawnNode(echoServerScript, [String(echoPort)]);
  let grab: GrabTarget | undefined;
  let shipped: GrabTarget | undefined;
  const close = async (): Promise<void> => {
    await Promise.all([echo.stop(), grab?.close(), shipped?.close()]);
  };
  try {
    await echo.waitFor(/^listening/);
    grab = await startGrab(REDIS_URL, DURABILITY);
    shipped = SHIPPED ? await startShippedGrab() : undefined;
    process.stderr.write(`signing ${2 * N} tokens...\n`);
    const sign = (prefix: string) =>
      Promise.all(Array.from({ length: N }, (_, i) => testSigner().sign({ userId: `bench-${run}-${prefix}${i}` })));
    const tokens = await sign('u');
    const coldTokens = await sign('v');
    const grabTarget = grab;
    const runLoadOn = (path: string, requests: PreparedRequest[], rps = 0, target = grabTarget): Promise<LoadReport> =>
      runLoad({
        target: `http://127.0.0.1:${path === ECHO_PATH ? echoPort : target.port}`,
        path,
        requests,
        // open loop: room for a stall's backlog, so the generator's own cap does not shape it
        concurrency: rps > 0 ? Math.max(C, OPEN_LOOP_STREAMS) : C,
        connections: 4,
        replyKey: 1,
        rps,
      });
    return {
      echo,
      echoPort,
      grab,
      shipped,
      tokens,
      coldTokens,
      create: (packetCount) => grabTarget.create(packetCount),
      requestsFor: (campaignIds, toks) =>
        toks.map((t, i) => ({
          body: grpcFrame(
            GrabRequest.encode({ campaignId: campaignIds[i % campaignIds.length]!, requestId: `b${i}` }).finish(),
          ),
          headers: { authorization: `Bearer ${t}` },
        })),
      async load(path, requests, target = grabTarget) {
        const pid = (path === ECHO_PATH ? echo : target.child).proc.pid!;
        const cpu0 = cpuTimeMs(pid);
        const report = await runLoadOn(path, requests, 0, target);
        return { ...report, serverCpuUs: ((cpuTimeMs(pid) - cpu0) * 1000) / report.count };
      },
      runLoadOn,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

function expectAllWon(r: LoadReport, what: string): void {
  const won = r.replies[String(Outcome.WON)] ?? 0;
  if (won !== N)
    throw new Error(`${what}: expected ${N} WON, got ${JSON.stringify(r.replies)} ${JSON.stringify(r.errors)}`);
}

/** Redis's CPU µs a grab over `work` (INFO cpu before and after). */
async function withRedisCpu<T>(redis: Redis, work: () => Promise<T>): Promise<{ result: T; redisCpuUs: number }> {
  const r0 = await redisCpuSeconds(redis);
  const result = await work();
  return { result, redisCpuUs: (((await redisCpuSeconds(redis)) - r0) * 1e6) / N };
}

/** Warm-up: JIT both servers and fill grab-svc's verified-token cache with `tokens`. */
async function warmUp(b: Bench): Promise<{ campaignId: string }> {
  process.stderr.write('warming up...\n');
  const warm = await b.create(N);
  await b.load(ECHO_PATH, b.requestsFor([warm.id], b.tokens));
  await b.load(GRAB_PATH, b.requestsFor([warm.id], b.tokens));
  if (b.shipped) {
    const shippedWarm = await b.shipped.create(N);
    await b.load(GRAB_PATH, b.requestsFor([shippedWarm.id], b.tokens), b.shipped);
  }
  return { campaignId: warm.id };
}

/** The echo baseline: the same requests against the bare grpc-js echo server. */
async function echoRound(b: Bench, requests: PreparedRequest[]): Promise<LoadReport & { serverCpuUs: number }> {
  return b.load(ECHO_PATH, requests);
}

/**
 * The grab on `target`: every call WON, with the Redis commands and Redis CPU each grab cost, and
 * grab-svc's GC over the round.
 */
async function grabRound(b: Bench, requests: PreparedRequest[], target = b.grab) {
  const before = await commandCalls(target.redis);
  const {
    result: { result: g, redisCpuUs },
    gc,
  } = await target.gcWindow(() => withRedisCpu(target.redis, () => b.load(GRAB_PATH, requests, target)));
  const after = await commandCalls(target.redis);
  expectAllWon(g, `grab (REDIS_DURABILITY ${target.durability})`);
  const delta = (k: string): number => (after[k] ?? 0) - (before[k] ?? 0);
  // every command a client sent: script calls plus anything outside a script (info itself: 1)
  const inside = ['hmget', 'hget', 'time', 'sismember', 'lpop', 'hset', 'xadd', 'hincrby', 'set'];
  return {
    report: g,
    redisCpuUs,
    gc,
    scriptCallsPerGrab: (delta('evalsha') + delta('eval')) / N,
    commandsSentPerGrab: (Object.keys(after).reduce((s, k) => s + (inside.includes(k) ? 0 : delta(k)), 0) - 1) / N,
  };
}

type GrabRun = Awaited<ReturnType<typeof grabRound>>;

/** The shipped policy's rounds next to the unprotected ones: medians, and the ratios to them. */
function shippedFigures(runs: GrabRun[], unprotected: { rps: number; cpuUs: number; redisCpuUs: number }) {
  if (!runs.length) return undefined;
  const rps = median(runs.map((g) => g.report.rps));
  const cpuUs = median(runs.map((g) => g.report.serverCpuUs));
  return {
    durability: DEFAULT_DURABILITY,
    rps,
    p50Ms: median(runs.map((g) => g.report.percentilesMs[50] ?? 0)),
    p99Ms: median(runs.map((g) => g.report.percentilesMs[99] ?? 0)),
    cpuUs,
    redisCpuUs: median(runs.map((g) => g.redisCpuUs)),
    rpsOverUnprotected: rps / unprotected.rps,
    cpuOverUnprotected: cpuUs / unprotected.cpuUs,
  };
}

/**
 * ROUNDS closed-loop rounds, echo then grab on a fresh campaign each (then the shipped policy's
 * grab-svc, with BENCH_DURABILITY=aof); medians, and V8's allocation over all grab rounds.
 */
async function echoVsGrab(b: Bench) {
  const echoRuns: (LoadReport & { serverCpuUs: number })[] = [];
  const grabRuns: GrabRun[] = [];
  const shippedRuns: GrabRun[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    process.stderr.write(`round ${r + 1}/${ROUNDS}\n`);
    const c = await b.create(N);
    const reqs = b.requestsFor([c.id], b.tokens);
    echoRuns.push(await echoRound(b, reqs));
    grabRuns.push(await grabRound(b, reqs));
    if (b.shipped) {
      const d = await b.shipped.create(N);
      shippedRuns.push(await grabRound(b, b.requestsFor([d.id], b.tokens), b.shipped));
    }
  }
  const last = grabRuns[grabRuns.length - 1]!;
  const grabReports = grabRuns.map((g) => g.report);
  const p = (runs: LoadReport[], q: number): number => median(runs.map((x) => x.percentilesMs[q] ?? 0));
  const echoRps = median(echoRuns.map((x) => x.rps));
  const grabRps = median(grabReports.map((x) => x.rps));
  // the server processes' own CPU per call, over the measured rounds only (not warm-up)
  const echoCpuUs = median(echoRuns.map((x) => x.serverCpuUs));
  const grabCpuUs = median(grabReports.map((x) => x.serverCpuUs));
  const redisCpuUsPerGrab = median(grabRuns.map((g) => g.redisCpuUs));
  return {
    echoRps,
    grabRps,
    grabOverEcho: grabRps / echoRps,
    echoP50Ms: p(echoRuns, 50),
    echoP99Ms: p(echoRuns, 99),
    grabP50Ms: p(grabReports, 50),
    grabP99Ms: p(grabReports, 99),
    echoServerCpuUsPerCall: echoCpuUs,
    grabServerCpuUsPerCall: grabCpuUs,
    echoOverGrabCpu: echoCpuUs / grabCpuUs,
    redisCpuUsPerGrab,
    echoOverGrabPlusRedisCpu: echoCpuUs / (grabCpuUs + redisCpuUsPerGrab),
    // V8's own count over every measured grab round (gc-window.ts), not a sample of one
    bytesAllocatedPerGrab: grabRuns.reduce((sum, g) => sum + g.gc.allocatedBytes, 0) / (grabRuns.length * N),
    gcPauseMaxMsClosedLoop: Math.max(...grabRuns.map((g) => g.gc.pauseMaxMs)),
    shipped: shippedFigures(shippedRuns, { rps: grabRps, cpuUs: grabCpuUs, redisCpuUs: redisCpuUsPerGrab }),
    // the last round's counts, as every round sends the same commands
    redisScriptCallsPerGrab: last.scriptCallsPerGrab,
    redisCommandsSentPerGrab: last.commandsSentPerGrab,
  };
}

/**
 * The open-loop p99: a fixed arrival schedule at `rps`, latency from each request's scheduled
 * send time. Echo at the same rate is the floor (loadgen + grpc-js).
 */
async function openLoop(b: Bench, rps: number) {
  process.stderr.write(`open loop at ${rps} req/s...\n`);
  const paced = await b.create(N);
  const pacedReqs = b.requestsFor([paced.id], b.tokens);
  const pacedEcho = await b.runLoadOn(ECHO_PATH, pacedReqs, rps);
  // Redis's own answer time meanwhile (a PING every 5 ms from here): what the shared Redis and
  // the machine add under the grab's tail, whatever grab-svc does.
  const pings: number[] = [];
  let pinging = true;
  const pinger = (async () => {
    while (pinging) {
      const t0 = performance.now();
      await b.grab.redis.ping();
      pings.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  const { result: pacedGrab, gc } = await b.grab
    .gcWindow(() => b.runLoadOn(GRAB_PATH, pacedReqs, rps))
    .finally(() => (pinging = false));
  await pinger;
  pings.sort((x, y) => x - y);
  const pingQ = (q: number): number => pings[Math.min(pings.length - 1, Math.ceil(q * pings.length) - 1)] ?? 0;
  expectAllWon(pacedGrab, 'open loop');
  return {
    grabOpenLoopRps: rps,
    grabOpenLoopP50Ms: pacedGrab.percentilesMs[50] ?? 0,
    grabOpenLoopP99Ms: pacedGrab.percentilesMs[99] ?? 0,
    grabOpenLoopP999Ms: pacedGrab.percentilesMs[99.9] ?? 0,
    gcPauseMaxMsDuringOpenLoop: gc.pauseMaxMs,
    gcPauseTotalMsDuringOpenLoop: gc.pauseTotalMs,
    gcsDuringOpenLoop: gc.gcs,
    redisPingP99MsDuringOpenLoop: pingQ(0.99),
    redisPingMaxMsDuringOpenLoop: pingQ(1),
    echoOpenLoopP50Ms: pacedEcho.percentilesMs[50] ?? 0,
    echoOpenLoopP99Ms: pacedEcho.percentilesMs[99] ?? 0,
    echoOpenLoopP999Ms: pacedEcho.percentilesMs[99.9] ?? 0,
  };
}

/** Grabs whose tokens grab-svc has never seen: each call verifies a new JWT. */
async function coldTokens(b: Bench): Promise<{ coldTokenGrabRps: number }> {
  process.stderr.write('cold tokens...\n');
  const cold = await b.create(N);
  return { coldTokenGrabRps: (await b.load(GRAB_PATH, b.requestsFor([cold.id], b.coldTokens))).rps };
}

/** Creating 1,000,000 packets next to redis-benchmark pushing as many; the campaign is kept. */
async function creationVsRedisBenchmark(b: Bench) {
  process.stderr.write('campaign size: one 1,000,000-packet campaign vs 1,000-packet campaigns...\n');
  const big = await b.create(1_000_000);
  process.stderr.write('redis-benchmark: 1,000,000 RPUSH...\n');
  const rbMs = await redisBenchmarkRpush(1_000_000);
  return {
    bigCampaignId: big.id,
    figures: {
      create1MPacketsMs: big.ms,
      redisBenchmarkRpush1MMs: rbMs,
      redisBenchmarkPipeline: RB_PIPELINE,
      create1MOverRedisBenchmark: big.ms / rbMs,
    },
  };
}

/** 1M vs 1k: grabs from one 1M-packet campaign against grabs spread over 1k-packet campaigns. */
async function bigVsSmallCampaigns(b: Bench, bigCampaignId: string) {
  // Alternated, twice each with other users, so drift in the machine's load hits both sides.
  const big: { rps: number; cpuUs: number; redisCpuUs: number }[] = [];
  const small: { rps: number; cpuUs: number; redisCpuUs: number }[] = [];
  let smallCampaigns = 0;
  const measured = async (requests: PreparedRequest[]) => {
    const { result, redisCpuUs } = await withRedisCpu(b.grab.redis, () => b.load(GRAB_PATH, requests));
    return { rps: result.rps, cpuUs: result.serverCpuUs, redisCpuUs };
  };
  for (const toks of [b.tokens, b.coldTokens]) {
    big.push(await measured(b.requestsFor([bigCampaignId], toks)));
    const smallIds: string[] = [];
    for (let i = 0; i < Math.ceil(N / 1000); i++) smallIds.push((await b.create(1000)).id);
    smallCampaigns = smallIds.length;
    small.push(await measured(b.requestsFor(smallIds, toks)));
  }
  const rps1MPackets = mean(big.map((x) => x.rps));
  const rps1kPackets = mean(small.map((x) => x.rps));
  return {
    smallCampaigns,
    figures: {
      rps1MPackets,
      rps1kPackets,
      ratio1MOver1k: rps1MPackets / rps1kPackets,
      grabCpuUs1M: mean(big.map((x) => x.cpuUs)),
      grabCpuUs1k: mean(small.map((x) => x.cpuUs)),
      redisCpuUs1M: mean(big.map((x) => x.redisCpuUs)),
      redisCpuUs1k: mean(small.map((x) => x.redisCpuUs)),
    },
  };
}

/** h2load, a native client, on the echo server (the host's ceiling) and on grab-svc (one user). */
async function h2loadReference(b: Bench, sample: PreparedRequest) {
  process.stderr.write('h2load against the echo server...\n');
  const h2At = (url: string) =>
    h2load({
      url,
      body: sample.body,
      headers: sample.headers ?? {},
      requests: N,
      clients: 4,
      streams: Math.ceil(C / 4),
    });
  const h2 = await h2At(`http://127.0.0.1:${b.echoPort}${ECHO_PATH}`);
  // h2load against grab-svc: one user, so this is the ALREADY_GRABBED path; a reference only
  const h2grab = await h2At(`http://127.0.0.1:${b.grab.port}${GRAB_PATH}`);
  return { h2loadEchoRps: h2.rps, h2loadGrabAlreadyGrabbedRps: h2grab.rps };
}

/**
 * --profile: a second grab-svc under the profiler, same workload: a warm-up run (which verifies
 * each token once) then two with the tokens cached, all sampled, on campaigns in the same Redis.
 */
async function profile(b: Bench): Promise<ProfileSummary> {
  const dir = mkdtempSync(join(tmpdir(), 'grab-prof-'));
  const profPort = await freePort();
  const prof = spawnNode(new URL('../main.js', import.meta.url), [], grabEnv(profPort), [
    ...NODE_FLAGS,
    '--cpu-prof',
    `--cpu-prof-dir=${dir}`,
  ]);
  try {
    await prof.waitFor(/gRPC server listening/);
    process.stderr.write('profiling grab-svc (node --cpu-prof)...\n');
    for (const toks of [b.tokens, b.tokens, b.tokens]) {
      const c = await b.create(N);
      const r = await runLoad({
        target: `http://127.0.0.1:${profPort}`,
        path: GRAB_PATH,
        requests: b.requestsFor([c.id], toks),
        concurrency: C,
        connections: 4,
        replyKey: 1,
      });
      expectAllWon(r, 'profile run');
    }
    await prof.stop();
    const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    if (!file) throw new Error('grab-svc wrote no .cpuprofile');
    return summarizeCpuProfile(join(dir, file), 20);
  } finally {
    await prof.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

type Figures = ReturnType<typeof composeFigures>;

function composeFigures(
  closed: Awaited<ReturnType<typeof echoVsGrab>>,
  open: Awaited<ReturnType<typeof openLoop>>,
  cold: Awaited<ReturnType<typeof coldTokens>>,
  creation: Awaited<ReturnType<typeof creationVsRedisBenchmark>>['figures'],
  size: Awaited<ReturnType<typeof bigVsSmallCampaigns>>['figures'],
  h2: Awaited<ReturnType<typeof h2loadReference>>,
) {
  const { redisScriptCallsPerGrab, redisCommandsSentPerGrab, ...throughput } = closed;
  return {
    requestsPerRun: N,
    concurrency: C,
    rounds: ROUNDS,
    ...throughput,
    ...cold,
    redisScriptCallsPerGrab,
    redisCommandsSentPerGrab,
    ...open,
    ...creation,
    ...size,
    h2loadEchoRps: h2.h2loadEchoRps,
    loadgenOverH2load: closed.echoRps / h2.h2loadEchoRps,
    h2loadGrabAlreadyGrabbedRps: h2.h2loadGrabAlreadyGrabbedRps,
  };
}

/**
 * Issue 16's goals under the keys a script checks them by (its "Goals" section): each goal is a
 * ratio of two of these, taken in one run. The shipped policy's keys are null without
 * BENCH_DURABILITY=aof.
 */
function goalKeys(f: Figures) {
  return {
    grab_cpu_us: f.grabServerCpuUsPerCall,
    echo_cpu_us: f.echoServerCpuUsPerCall,
    redis_cpu_us_per_grab: f.redisCpuUsPerGrab,
    open_loop_grab_p99_ms: f.grabOpenLoopP99Ms,
    open_loop_echo_p99_ms: f.echoOpenLoopP99Ms,
    gc_pause_max_ms: f.gcPauseMaxMsDuringOpenLoop,
    bytes_allocated_per_grab: f.bytesAllocatedPerGrab,
    unprotected_durability: DURABILITY,
    shipped_durability: f.shipped?.durability ?? null,
    shipped_grab_cpu_us: f.shipped?.cpuUs ?? null,
    shipped_redis_cpu_us_per_grab: f.shipped?.redisCpuUs ?? null,
    shipped_grab_rps: f.shipped?.rps ?? null,
    unprotected_grab_rps: f.grabRps,
    shipped_grab_p99_ms: f.shipped?.p99Ms ?? null,
    unprotected_grab_p99_ms: f.grabP99Ms,
  };
}

function figuresTable(f: Figures, smallCampaigns: number, startLoad: string): string {
  const t = new Table({ head: ['figure', 'value', 'note'] });
  t.push(
    ['echo req/s (loadgen)', fmt(f.echoRps), `median of ${ROUNDS}, ${N} calls, ${C} in flight`],
    ['grab req/s (loadgen)', fmt(f.grabRps), 'every call WON, tokens already verified once'],
    ['grab / echo', fmt(f.grabOverEcho, 2), 'goal >= 0.85'],
    ['echo p50 / p99 ms', `${fmt(f.echoP50Ms, 2)} / ${fmt(f.echoP99Ms, 2)}`, `at ${C} in flight`],
    ['grab p50 / p99 ms', `${fmt(f.grabP50Ms, 2)} / ${fmt(f.grabP99Ms, 2)}`, `at ${C} in flight`],
    [
      `grab p50 / p99 / p99.9 ms at ${fmt(f.grabOpenLoopRps)} req/s`,
      `${fmt(f.grabOpenLoopP50Ms, 2)} / ${fmt(f.grabOpenLoopP99Ms, 2)} / ${fmt(f.grabOpenLoopP999Ms, 2)}`,
      'open loop at half the max rate, from the scheduled send; goal p99 <= 5',
    ],
    [
      'echo p50 / p99 / p99.9 ms, same rate',
      `${fmt(f.echoOpenLoopP50Ms, 2)} / ${fmt(f.echoOpenLoopP99Ms, 2)} / ${fmt(f.echoOpenLoopP999Ms, 2)}`,
      'the floor: load generator + grpc-js',
    ],
    [
      'Redis PING p99 / max ms meanwhile',
      `${fmt(f.redisPingP99MsDuringOpenLoop, 2)} / ${fmt(f.redisPingMaxMsDuringOpenLoop, 2)}`,
      'from this process during the open-loop grab run: the shared Redis and host',
    ],
    [
      'server CPU µs per call: echo / grab',
      `${fmt(f.echoServerCpuUsPerCall)} / ${fmt(f.grabServerCpuUsPerCall)}`,
      'from /proc; barely moved by other load',
    ],
    ['echo CPU / grab CPU', fmt(f.echoOverGrabCpu, 2), 'the throughput ratio one core would give'],
    [
      'Redis CPU µs per grab',
      fmt(f.redisCpuUsPerGrab, 1),
      'INFO cpu; on the same 2 cores (includes any other client of this Redis)',
    ],
    ['echo CPU / (grab + Redis CPU)', fmt(f.echoOverGrabPlusRedisCpu, 2), 'the ratio when the cores are the limit'],
    [
      'V8 bytes allocated per grab',
      fmt(f.bytesAllocatedPerGrab),
      `grab-svc, all ${ROUNDS} measured rounds (GC profiler: heap growth + freed)`,
    ],
    [
      'grab-svc GC pause max ms: open loop / closed',
      `${fmt(f.gcPauseMaxMsDuringOpenLoop, 1)} / ${fmt(f.gcPauseMaxMsClosedLoop, 1)}`,
      `open loop: ${f.gcsDuringOpenLoop} GCs, ${fmt(f.gcPauseTotalMsDuringOpenLoop)} ms paused; goal max <= 10`,
    ],
    ...(f.shipped
      ? [
          [
            `grab req/s, p99 ms, CPU µs: REDIS_DURABILITY ${f.shipped.durability}`,
            `${fmt(f.shipped.rps)}, ${fmt(f.shipped.p99Ms, 2)}, ${fmt(f.shipped.cpuUs)}`,
            `own Redis, appendfsync always; ${fmt(f.shipped.rpsOverUnprotected, 2)}x the req/s, ` +
              `${fmt(f.shipped.cpuOverUnprotected, 2)}x the CPU of ${DURABILITY}`,
          ],
          ['Redis CPU µs per grab, shipped policy', fmt(f.shipped.redisCpuUs, 1), 'INFO cpu of the bench-owned Redis'],
        ]
      : []),
    ['grab req/s, first-seen tokens', fmt(f.coldTokenGrabRps), 'each call verifies a new JWT'],
    ['Redis script calls per grab', fmt(f.redisScriptCallsPerGrab, 3), 'EVALSHA+EVAL from INFO commandstats; goal 1'],
    [
      'Redis commands sent per grab',
      fmt(f.redisCommandsSentPerGrab, 3),
      'all client commands, script internals excluded',
    ],
    [
      'create 1,000,000 packets',
      `${fmt(f.create1MPacketsMs)} ms`,
      `${fmt(1e6 / (f.create1MPacketsMs / 1000))} packets/s, split + pipelined RPUSH`,
    ],
    [
      'redis-benchmark, 1,000,000 RPUSH',
      `${fmt(f.redisBenchmarkRpush1MMs)} ms`,
      `-c 1 -P ${RB_PIPELINE}, one value a command (-t rpush's workload)`,
    ],
    ['create 1M packets / redis-benchmark', fmt(f.create1MOverRedisBenchmark, 2), 'goal <= 3'],
    ['grab req/s, 1M-packet campaign', fmt(f.rps1MPackets), 'mean of 2, alternated with the next'],
    ['grab req/s, 1k-packet campaigns', fmt(f.rps1kPackets), `${smallCampaigns} campaigns, every call WON`],
    ['1M / 1k', fmt(f.ratio1MOver1k, 2), 'goal within 10% (0.9-1.1)'],
    [
      'CPU µs per grab, 1M / 1k: grab-svc; Redis',
      `${fmt(f.grabCpuUs1M)} / ${fmt(f.grabCpuUs1k)}; ${fmt(f.redisCpuUs1M, 1)} / ${fmt(f.redisCpuUs1k, 1)}`,
      'where a difference would come from',
    ],
    ['echo req/s (h2load)', fmt(f.h2loadEchoRps), 'native client: the ceiling of this host'],
    ['loadgen / h2load on echo', fmt(f.loadgenOverH2load, 2), 'near 1: the load generator is not the bottleneck'],
    [
      'grab req/s (h2load, one user)',
      fmt(f.h2loadGrabAlreadyGrabbedRps),
      'ALREADY_GRABBED path: h2load cannot vary the token',
    ],
    ['load average at start', startLoad, ''],
    ['load average at end', loadAverageLine(), ''],
    ['grab-svc node flags', NODE_FLAGS.join(' ') || '(none)', 'BENCH_NODE_FLAGS to compare'],
    ['grab-svc REDIS_DURABILITY', DURABILITY, 'none unless set: bench:durability measures the policies'],
  );
  return t.toString();
}

function profileTable(sum: ProfileSummary): string {
  const pt = new Table({ head: ['self time: function', '%', 'area', '%'] });
  for (let i = 0; i < sum.functions.length; i++) {
    const f = sum.functions[i]!;
    const a = sum.areas[i];
    pt.push([f.name, fmt(f.percent, 1), a?.name ?? '', a ? fmt(a.percent, 1) : '']);
  }
  return `grab-svc profile: ${fmt(sum.totalMs)} ms sampled, idle ${fmt(sum.idlePercent, 1)}%\n${pt.toString()}`;
}

async function main(): Promise<void> {
  const startLoad = loadAverageLine();
  process.stderr.write(`${startLoad}\n`);
  const json = process.argv.includes('--json');
  const b = await startBench();
  try {
    const warm = await warmUp(b);
    const closed = await echoVsGrab(b);
    // open loop at half the closed-loop maximum
    const open = await openLoop(b, Math.round(closed.grabRps / 2));
    const cold = await coldTokens(b);
    const creation = await creationVsRedisBenchmark(b);
    const size = await bigVsSmallCampaigns(b, creation.bigCampaignId);
    const h2 = await h2loadReference(b, b.requestsFor([warm.campaignId], b.tokens)[0]!);
    const figures = composeFigures(closed, open, cold, creation.figures, size.figures, h2);
    // --json: stdout is one JSON object alone (`npm run -s bench:grab -- --json | jq`)
    const say = (text: string): void => void (json ? process.stderr : process.stdout).write(`${text}\n`);
    say(figuresTable(figures, size.smallCampaigns, startLoad));
    const sum = PROFILE ? await profile(b) : undefined;
    if (sum) say(profileTable(sum));
    if (json) console.log(JSON.stringify({ ...goalKeys(figures), ...figures, profile: sum ?? null }, null, 2));
  } finally {
    await b.close();
  }
}

await main();

/**
 * `npm run bench:grab`: grab-svc's throughput and latency next to a bare grpc-js echo server,
 * both driven by the same load generator in the same run, plus Redis calls per grab and the
 * effect of campaign size; the grab's latency at half its maximum rate (open loop, fixed
 * arrival schedule); creating 1,000,000 packets next to redis-benchmark pushing as many. Figures,
 * not a test. Env: BENCH_REQUESTS, BENCH_CONCURRENCY, BENCH_ROUNDS, REDIS_URL, BENCH_NODE_FLAGS, BENCH_CHILD_LOG
 * (a file the servers' output is appended to);
 * `--json` prints the figures as JSON too; `--profile` adds a run of a grab-svc under
 * `node --cpu-prof` and prints where its CPU went (self time by function and by package).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { credentials } from '@grpc/grpc-js';
import { createRedis, keys, signToken } from '@redpacket/lib';
import { bearer, call, deleteKeys } from '@redpacket/lib/testing';
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
  type LoadReport,
  type PreparedRequest,
} from '@redpacket/loadgen';
import { AdminServiceClient, GrabRequest, Outcome, Split } from '@redpacket/proto';
import Table from 'cli-table3';
import { GRAB_NODE_FLAGS } from '@redpacket/grab-svc/node-flags';

const N = Number(process.env['BENCH_REQUESTS'] ?? 60_000);
const C = Number(process.env['BENCH_CONCURRENCY'] ?? 200);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 3);
const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const SECRET = randomBytes(24).toString('hex');
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

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const fmt = (n: number, d = 0): string =>
  n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

async function commandCalls(redis: ReturnType<typeof createRedis>): Promise<Record<string, number>> {
  const info = await redis.info('commandstats');
  const out: Record<string, number> = {};
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

/**
 * `redis-benchmark -t rpush`'s workload (1,000,000 single-value RPUSH to one list) against the
 * bench's own Redis database and a key of this run, with a packet-sized value; returns the ms.
 */
/** Redis's own CPU seconds so far (INFO cpu): per grab, what the server under test adds on the same cores. */
async function redisCpuSeconds(redis: ReturnType<typeof createRedis>): Promise<number> {
  const info = await redis.info('cpu');
  const get = (k: string): number => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
  return get('used_cpu_user') + get('used_cpu_sys');
}

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

async function main(): Promise<void> {
  const startLoad = loadAverageLine();
  process.stderr.write(`${startLoad}\n`);
  const redis = createRedis({ url: REDIS_URL });
  const echoPort = await freePort();
  const grabPort = await freePort();
  const echo = spawnNode(echoServerScript, [String(echoPort)]);
  const grabEnv = (port: number): Record<string, string> => ({
    GRPC_PORT: String(port),
    REDIS_URL,
    JWT_SECRET: SECRET,
    LOG_LEVEL: 'info',
    // The grab path alone: the outbox relay has its own benchmark (bench:relay), and here it
    // would publish every win of every round to the shared broker with nobody consuming them.
    RELAY_ENABLED: '0',
    SETTLE_EVERY_MS: '0',
  });
  const grab = spawnNode(new URL('../main.js', import.meta.url), [], grabEnv(grabPort), NODE_FLAGS);
  const created: string[] = [];
  try {
    await echo.waitFor(/^listening/);
    await grab.waitFor(/gRPC server listening/);
    const admin = new AdminServiceClient(`127.0.0.1:${grabPort}`, credentials.createInsecure());
    const adminMd = bearer(await signToken({ secret: SECRET, userId: 'bench-ops', role: 'admin' }));
    const create = async (packetCount: number): Promise<{ id: string; ms: number }> => {
      const t0 = performance.now();
      const c = await call(
        admin.createCampaign,
        admin,
        {
          name: `bench ${run}`,
          totalCents: BigInt(packetCount) * 100n,
          packetCount,
          split: Split.RANDOM,
          batches: 1,
          batchIntervalMs: 0n,
          startsAt: undefined,
          expiresAt: new Date(Date.now() + 3600_000),
          ownerId: 'bench-ops',
          eligibility: undefined,
        },
        adminMd,
      );
      created.push(c.campaignId);
      return { id: c.campaignId, ms: performance.now() - t0 };
    };

    process.stderr.write(`signing ${2 * N} tokens...\n`);
    const sign = (prefix: string) =>
      Promise.all(
        Array.from({ length: N }, (_, i) => signToken({ secret: SECRET, userId: `bench-${run}-${prefix}${i}` })),
      );
    const tokens = await sign('u');
    const coldTokens = await sign('v');
    const requestsFor = (campaignIds: string[], toks: string[]): PreparedRequest[] =>
      toks.map((t, i) => ({
        body: grpcFrame(
          GrabRequest.encode({ campaignId: campaignIds[i % campaignIds.length]!, requestId: `b${i}` }).finish(),
        ),
        headers: { authorization: `Bearer ${t}` },
      }));
    const cpuUs: Record<string, number[]> = { echo: [], grab: [] };
    const load = async (path: string, requests: PreparedRequest[]): Promise<LoadReport> => {
      const isEcho = path === ECHO_PATH;
      const pid = (isEcho ? echo : grab).proc.pid!;
      const cpu0 = cpuTimeMs(pid);
      const report = await runLoadOn(path, requests);
      cpuUs[isEcho ? 'echo' : 'grab']!.push(((cpuTimeMs(pid) - cpu0) * 1000) / report.count);
      return report;
    };
    const runLoadOn = (path: string, requests: PreparedRequest[], rps = 0): Promise<LoadReport> =>
      runLoad({
        target: `http://127.0.0.1:${path === ECHO_PATH ? echoPort : grabPort}`,
        path,
        requests,
        // open loop: room for a stall's backlog, so the generator's own cap does not shape it
        concurrency: rps > 0 ? Math.max(C, OPEN_LOOP_STREAMS) : C,
        connections: 4,
        replyKey: 1,
        rps,
      });

    // Warm-up: JIT both servers and fill grab-svc's verified-token cache with `tokens`.
    process.stderr.write('warming up...\n');
    const warm = await create(N);
    await load(ECHO_PATH, requestsFor([warm.id], tokens));
    await load(GRAB_PATH, requestsFor([warm.id], tokens));

    const echoRuns: LoadReport[] = [];
    const grabRuns: LoadReport[] = [];
    let redisCallsPerGrab = 0;
    let scriptCallsPerGrab = 0;
    const redisCpuUs: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      process.stderr.write(`round ${r + 1}/${ROUNDS}\n`);
      const c = await create(N);
      const reqs = requestsFor([c.id], tokens);
      echoRuns.push(await load(ECHO_PATH, reqs));
      const before = await commandCalls(redis);
      const redisCpu0 = await redisCpuSeconds(redis);
      const g = await load(GRAB_PATH, reqs);
      const after = await commandCalls(redis);
      redisCpuUs.push((((await redisCpuSeconds(redis)) - redisCpu0) * 1e6) / N);
      grabRuns.push(g);
      const won = g.replies[String(Outcome.WON)] ?? 0;
      if (won !== N) throw new Error(`expected ${N} WON, got ${JSON.stringify(g.replies)} ${JSON.stringify(g.errors)}`);
      const delta = (k: string): number => (after[k] ?? 0) - (before[k] ?? 0);
      scriptCallsPerGrab = (delta('evalsha') + delta('eval')) / N;
      // every command a client sent: script calls plus anything outside a script (info itself: 1)
      const inside = ['hmget', 'hget', 'time', 'sismember', 'lpop', 'hset', 'xadd', 'hincrby', 'set'];
      redisCallsPerGrab = (Object.keys(after).reduce((s, k) => s + (inside.includes(k) ? 0 : delta(k)), 0) - 1) / N;
    }

    // Open loop at half the closed-loop maximum: a fixed arrival schedule, latency from each
    // request's scheduled send time. Echo at the same rate is the floor (loadgen + grpc-js).
    const maxRps = median(grabRuns.map((x) => x.rps));
    const halfRps = Math.round(maxRps / 2);
    process.stderr.write(`open loop at ${halfRps} req/s (half of ${Math.round(maxRps)})...\n`);
    const paced = await create(N);
    const pacedReqs = requestsFor([paced.id], tokens);
    const pacedEcho = await runLoadOn(ECHO_PATH, pacedReqs, halfRps);
    // Redis's own answer time meanwhile (a PING every 5 ms from here): what the shared Redis and
    // the machine add under the grab's tail, whatever grab-svc does.
    const pings: number[] = [];
    let pinging = true;
    const pinger = (async () => {
      while (pinging) {
        const t0 = performance.now();
        await redis.ping();
        pings.push(performance.now() - t0);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const pacedGrab = await runLoadOn(GRAB_PATH, pacedReqs, halfRps).finally(() => (pinging = false));
    await pinger;
    pings.sort((a, b) => a - b);
    const pingQ = (q: number): number => pings[Math.min(pings.length - 1, Math.ceil(q * pings.length) - 1)] ?? 0;
    if ((pacedGrab.replies[String(Outcome.WON)] ?? 0) !== N) {
      throw new Error(`open loop: expected ${N} WON, got ${JSON.stringify(pacedGrab.replies)}`);
    }

    process.stderr.write('cold tokens...\n');
    const cold = await create(N);
    const coldRun = await load(GRAB_PATH, requestsFor([cold.id], coldTokens));

    process.stderr.write('campaign size: one 1,000,000-packet campaign vs 1,000-packet campaigns...\n');
    const big = await create(1_000_000);
    process.stderr.write('redis-benchmark: 1,000,000 RPUSH...\n');
    const rbMs = await redisBenchmarkRpush(1_000_000);
    // Alternated, twice each with other users, so drift in the machine's load hits both sides.
    const bigRps: number[] = [];
    const smallRps: number[] = [];
    const bigRedisUs: number[] = [];
    const smallRedisUs: number[] = [];
    let smallCampaigns = 0;
    for (const toks of [tokens, coldTokens]) {
      let r0 = await redisCpuSeconds(redis);
      bigRps.push((await load(GRAB_PATH, requestsFor([big.id], toks))).rps);
      bigRedisUs.push((((await redisCpuSeconds(redis)) - r0) * 1e6) / N);
      const smallIds: string[] = [];
      for (let i = 0; i < Math.ceil(N / 1000); i++) smallIds.push((await create(1000)).id);
      smallCampaigns = smallIds.length;
      r0 = await redisCpuSeconds(redis);
      smallRps.push((await load(GRAB_PATH, requestsFor(smallIds, toks))).rps);
      smallRedisUs.push((((await redisCpuSeconds(redis)) - r0) * 1e6) / N);
    }
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    const bigRun = { rps: mean(bigRps) };
    const smallRun = { rps: mean(smallRps) };
    // grab-svc's CPU per call of those four runs (the last entries of cpuUs.grab), big and small
    const sizeCpu = cpuUs['grab']!.slice(-4);

    process.stderr.write('h2load against the echo server...\n');
    const sample = requestsFor([warm.id], tokens)[0]!;
    const h2At = (url: string) =>
      h2load({
        url,
        body: sample.body,
        headers: sample.headers ?? {},
        requests: N,
        clients: 4,
        streams: Math.ceil(C / 4),
      });
    const h2 = await h2At(`http://127.0.0.1:${echoPort}${ECHO_PATH}`);
    // h2load against grab-svc: one user, so this is the ALREADY_GRABBED path; a reference only
    const h2grab = await h2At(`http://127.0.0.1:${grabPort}${GRAB_PATH}`);

    // the server processes' own CPU per call, over the measured rounds only (not warm-up)
    const echoCpuUs = median(cpuUs['echo']!.slice(1, 1 + ROUNDS));
    const grabCpuUs = median(cpuUs['grab']!.slice(1, 1 + ROUNDS));
    const echoRps = median(echoRuns.map((x) => x.rps));
    const grabRps = median(grabRuns.map((x) => x.rps));
    const p = (runs: LoadReport[], q: number): number => median(runs.map((x) => x.percentilesMs[q] ?? 0));
    const figures = {
      requestsPerRun: N,
      concurrency: C,
      rounds: ROUNDS,
      echoRps,
      grabRps,
      grabOverEcho: grabRps / echoRps,
      echoP50Ms: p(echoRuns, 50),
      echoP99Ms: p(echoRuns, 99),
      grabP50Ms: p(grabRuns, 50),
      grabP99Ms: p(grabRuns, 99),
      echoServerCpuUsPerCall: echoCpuUs,
      grabServerCpuUsPerCall: grabCpuUs,
      echoOverGrabCpu: echoCpuUs / grabCpuUs,
      redisCpuUsPerGrab: median(redisCpuUs),
      echoOverGrabPlusRedisCpu: echoCpuUs / (grabCpuUs + median(redisCpuUs)),
      coldTokenGrabRps: coldRun.rps,
      redisScriptCallsPerGrab: scriptCallsPerGrab,
      redisCommandsSentPerGrab: redisCallsPerGrab,
      grabOpenLoopRps: halfRps,
      grabOpenLoopP50Ms: pacedGrab.percentilesMs[50] ?? 0,
      grabOpenLoopP99Ms: pacedGrab.percentilesMs[99] ?? 0,
      grabOpenLoopP999Ms: pacedGrab.percentilesMs[99.9] ?? 0,
      redisPingP99MsDuringOpenLoop: pingQ(0.99),
      redisPingMaxMsDuringOpenLoop: pingQ(1),
      echoOpenLoopP50Ms: pacedEcho.percentilesMs[50] ?? 0,
      echoOpenLoopP99Ms: pacedEcho.percentilesMs[99] ?? 0,
      echoOpenLoopP999Ms: pacedEcho.percentilesMs[99.9] ?? 0,
      create1MPacketsMs: big.ms,
      redisBenchmarkRpush1MMs: rbMs,
      redisBenchmarkPipeline: RB_PIPELINE,
      create1MOverRedisBenchmark: big.ms / rbMs,
      rps1MPackets: bigRun.rps,
      rps1kPackets: smallRun.rps,
      ratio1MOver1k: bigRun.rps / smallRun.rps,
      grabCpuUs1M: mean([sizeCpu[0]!, sizeCpu[2]!]),
      grabCpuUs1k: mean([sizeCpu[1]!, sizeCpu[3]!]),
      redisCpuUs1M: mean(bigRedisUs),
      redisCpuUs1k: mean(smallRedisUs),
      h2loadEchoRps: h2.rps,
      loadgenOverH2load: echoRps / h2.rps,
      h2loadGrabAlreadyGrabbedRps: h2grab.rps,
    };

    const t = new Table({ head: ['figure', 'value', 'note'] });
    t.push(
      ['echo req/s (loadgen)', fmt(echoRps), `median of ${ROUNDS}, ${N} calls, ${C} in flight`],
      ['grab req/s (loadgen)', fmt(grabRps), 'every call WON, tokens already verified once'],
      ['grab / echo', fmt(figures.grabOverEcho, 2), 'goal >= 0.85'],
      ['echo p50 / p99 ms', `${fmt(figures.echoP50Ms, 2)} / ${fmt(figures.echoP99Ms, 2)}`, `at ${C} in flight`],
      ['grab p50 / p99 ms', `${fmt(figures.grabP50Ms, 2)} / ${fmt(figures.grabP99Ms, 2)}`, `at ${C} in flight`],
      [
        `grab p50 / p99 / p99.9 ms at ${fmt(halfRps)} req/s`,
        `${fmt(figures.grabOpenLoopP50Ms, 2)} / ${fmt(figures.grabOpenLoopP99Ms, 2)} / ${fmt(figures.grabOpenLoopP999Ms, 2)}`,
        'open loop at half the max rate, from the scheduled send; goal p99 <= 5',
      ],
      [
        'echo p50 / p99 / p99.9 ms, same rate',
        `${fmt(figures.echoOpenLoopP50Ms, 2)} / ${fmt(figures.echoOpenLoopP99Ms, 2)} / ${fmt(figures.echoOpenLoopP999Ms, 2)}`,
        'the floor: load generator + grpc-js',
      ],
      [
        'Redis PING p99 / max ms meanwhile',
        `${fmt(figures.redisPingP99MsDuringOpenLoop, 2)} / ${fmt(figures.redisPingMaxMsDuringOpenLoop, 2)}`,
        'from this process during the open-loop grab run: the shared Redis and host',
      ],
      [
        'server CPU µs per call: echo / grab',
        `${fmt(echoCpuUs)} / ${fmt(grabCpuUs)}`,
        'from /proc; barely moved by other load',
      ],
      ['echo CPU / grab CPU', fmt(figures.echoOverGrabCpu, 2), 'the throughput ratio one core would give'],
      [
        'Redis CPU µs per grab',
        fmt(figures.redisCpuUsPerGrab, 1),
        'INFO cpu; on the same 2 cores (includes any other client of this Redis)',
      ],
      [
        'echo CPU / (grab + Redis CPU)',
        fmt(figures.echoOverGrabPlusRedisCpu, 2),
        'the ratio when the cores are the limit',
      ],
      ['grab req/s, first-seen tokens', fmt(coldRun.rps), 'each call verifies a new JWT'],
      ['Redis script calls per grab', fmt(scriptCallsPerGrab, 3), 'EVALSHA+EVAL from INFO commandstats; goal 1'],
      ['Redis commands sent per grab', fmt(redisCallsPerGrab, 3), 'all client commands, script internals excluded'],
      [
        'create 1,000,000 packets',
        `${fmt(big.ms)} ms`,
        `${fmt(1e6 / (big.ms / 1000))} packets/s, split + pipelined RPUSH`,
      ],
      [
        'redis-benchmark, 1,000,000 RPUSH',
        `${fmt(rbMs)} ms`,
        `-c 1 -P ${RB_PIPELINE}, one value a command (-t rpush's workload)`,
      ],
      ['create 1M packets / redis-benchmark', fmt(figures.create1MOverRedisBenchmark, 2), 'goal <= 3'],
      ['grab req/s, 1M-packet campaign', fmt(bigRun.rps), 'mean of 2, alternated with the next'],
      ['grab req/s, 1k-packet campaigns', fmt(smallRun.rps), `${smallCampaigns} campaigns, every call WON`],
      ['1M / 1k', fmt(figures.ratio1MOver1k, 2), 'goal within 10% (0.9-1.1)'],
      [
        'CPU µs per grab, 1M / 1k: grab-svc; Redis',
        `${fmt(figures.grabCpuUs1M)} / ${fmt(figures.grabCpuUs1k)}; ${fmt(figures.redisCpuUs1M, 1)} / ${fmt(figures.redisCpuUs1k, 1)}`,
        'where a difference would come from',
      ],
      ['echo req/s (h2load)', fmt(h2.rps), 'native client: the ceiling of this host'],
      [
        'loadgen / h2load on echo',
        fmt(figures.loadgenOverH2load, 2),
        'near 1: the load generator is not the bottleneck',
      ],
      ['grab req/s (h2load, one user)', fmt(h2grab.rps), 'ALREADY_GRABBED path: h2load cannot vary the token'],
    );
    t.push(
      ['load average at start', startLoad, ''],
      ['load average at end', loadAverageLine(), ''],
      ['grab-svc node flags', NODE_FLAGS.join(' ') || '(none)', 'BENCH_NODE_FLAGS to compare'],
    );
    console.log(t.toString());
    if (process.argv.includes('--json')) console.log(JSON.stringify(figures, null, 2));
    if (PROFILE) {
      // A second grab-svc under the profiler, same workload: a warm-up run (which verifies each
      // token once) then two with the tokens cached, all sampled, on campaigns in the same Redis.
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
        for (const toks of [tokens, tokens, tokens]) {
          const c = await create(N);
          const r = await runLoad({
            target: `http://127.0.0.1:${profPort}`,
            path: GRAB_PATH,
            requests: requestsFor([c.id], toks),
            concurrency: C,
            connections: 4,
            replyKey: 1,
          });
          if ((r.replies[String(Outcome.WON)] ?? 0) !== N) throw new Error(`profile run: ${JSON.stringify(r.replies)}`);
        }
        await prof.stop();
        const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
        if (!file) throw new Error('grab-svc wrote no .cpuprofile');
        const sum = summarizeCpuProfile(join(dir, file), 20);
        const pt = new Table({ head: ['self time: function', '%', 'area', '%'] });
        for (let i = 0; i < sum.functions.length; i++) {
          const f = sum.functions[i]!;
          const a = sum.areas[i];
          pt.push([f.name, fmt(f.percent, 1), a?.name ?? '', a ? fmt(a.percent, 1) : '']);
        }
        console.log(`grab-svc profile: ${fmt(sum.totalMs)} ms sampled, idle ${fmt(sum.idlePercent, 1)}%`);
        console.log(pt.toString());
        if (process.argv.includes('--json')) console.log(JSON.stringify(sum, null, 2));
      } finally {
        await prof.stop();
        rmSync(dir, { recursive: true, force: true });
      }
    }
    admin.close();
  } finally {
    for (const id of created) {
      await deleteKeys(redis as never, `rp:{${id}}:*`);
      await redis.zrem(keys.campaigns, id);
    }
    await Promise.all([echo.stop(), grab.stop()]);
    await redis.quit();
  }
}

await main();

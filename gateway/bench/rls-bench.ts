/**
 * `npm run bench:rls`: RLS decisions/s against a bare grpc-js server answering the same method
 * with a constant (the "echo" ceiling of grpc-js on this machine), both driven by h2load with one
 * pre-encoded gRPC frame, in the same run; plus Redis calls per decision, read from INFO
 * commandstats of a private redis-server started for the run.
 *
 * Scenarios: echo (no logic), counted (every decision is a Lua call: limits too high to refuse),
 * over-limit (one user already over the per-user limit: answered from the in-process cache).
 * A grpc-js client saturates at 5-7k req/s, so it would measure itself: h2load is the driver.
 * `--json`: stdout is one JSON object (the table goes to stderr), issue 16's keys first:
 * `rls_cpu_us` (the counted scenario's Node CPU per decision) and `echo_cpu_us`.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Server, ServerCredentials } from '@grpc/grpc-js';
import { createLogger, createRedis, startServer, type RunningServer } from '@redpacket/lib';
import { deleteKeys } from '@redpacket/lib/testing';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { parse, stringify } from 'yaml';
import { parseConfig, type RateLimitConfig } from '@redpacket/gateway/config';
import { Limiter } from '@redpacket/gateway/limiter';
import { loadRateLimitService } from '@redpacket/gateway/rls-proto';
import { registerScripts } from '@redpacket/gateway/scripts';
import { createGatewayServer, type RateLimitRequest } from '@redpacket/gateway/server';

const REQUESTS = Number(process.env['BENCH_REQUESTS'] ?? 60_000);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 3);
const CONNECTIONS = Number(process.env['BENCH_CONNECTIONS'] ?? 4);
const STREAMS = Number(process.env['BENCH_STREAMS'] ?? 32);
const SCENARIOS = (process.env['BENCH_SCENARIOS'] ?? 'counted,over-limit').split(',');
/** The private redis-server, the echo server and the RLS take this port and the next two. */
const BASE_PORT = Number(process.env['BENCH_PORT'] ?? 17279);
const REDIS_PORT = BASE_PORT;
const ECHO_PORT = BASE_PORT + 1;
const RLS_PORT = BASE_PORT + 2;
/** The machine's load, printed at the start and the end so a reader can judge the noise. */
const loadAverage = (): string =>
  `load average ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')} on ${availableParallelism()} cores`;
const startLoad = loadAverage();
const PATH = '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit';

const log = createLogger('rls-bench', 'silent');
const Service = loadRateLimitService();
const shippedYaml = readFileSync(new URL('../../config/ratelimit.yaml', import.meta.url), 'utf8');

/** The shipped rules, with every limit raised so that no decision refuses (each one is a Lua call). */
function countedConfig(): RateLimitConfig {
  const raise = (list: Record<string, unknown>[]): void => {
    for (const d of list) {
      const rl = d['rate_limit'] as Record<string, unknown> | undefined;
      if (rl) rl['requests_per_unit'] = 1_000_000_000;
      if (d['descriptors']) raise(d['descriptors'] as Record<string, unknown>[]);
    }
  };
  const doc = parse(shippedYaml) as Record<string, unknown>;
  raise(doc['descriptors'] as Record<string, unknown>[]);
  return parseConfig(stringify(doc));
}

/** A grab as envoy/envoy.yaml describes it: per user, per campaign (path), global. */
const grabRequest = (user: string): RateLimitRequest => ({
  domain: 'redpacket',
  descriptors: [
    {
      entries: [
        { key: 'route', value: 'grab' },
        { key: 'user', value: user },
      ],
      limit: null,
    },
    { entries: [{ key: 'path', value: '/v1/campaigns/bench-campaign/grab' }], limit: null },
    { entries: [{ key: 'scope', value: 'global' }], limit: null },
  ],
  hits_addend: 0,
});

/** A length-prefixed gRPC message (uncompressed), as h2load sends it with -d. */
function grpcFrame(req: RateLimitRequest): Buffer {
  const method = Service.service['ShouldRateLimit'];
  if (!method) throw new Error('ShouldRateLimit missing from the service definition');
  const body = method.requestSerialize(req);
  const head = Buffer.alloc(5);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

interface Run {
  reqPerSec: number;
  succeeded: number;
}

/** Async on purpose: the servers under test run on this process's event loop. */
async function h2load(port: number, frameFile: string): Promise<Run> {
  const { stdout: out } = await promisify(execFile)(
    'h2load',
    ['-n', String(REQUESTS), '-c', String(CONNECTIONS), '-m', String(STREAMS), '-t', '1', '-d', frameFile]
      .concat(['-H', 'content-type: application/grpc', '-H', 'te: trailers'])
      .concat([`http://127.0.0.1:${port}${PATH}`]),
    { encoding: 'utf8' },
  );
  const rps = /finished in [^,]+, ([\d.]+) req\/s/.exec(out)?.[1];
  const ok = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded/.exec(out)?.[1];
  if (!rps || !ok) throw new Error(`could not read h2load output:\n${out}`);
  return { reqPerSec: Number(rps), succeeded: Number(ok) };
}

/**
 * Commands the gateway sends (the decision script, EVALSHA or EVAL, and the flag lookup, GET and
 * PTTL) and all commands Redis ran (those plus the ones inside the script), from INFO commandstats.
 */
async function commandCalls(redis: Redis): Promise<{ sent: number; executed: number }> {
  const info = await redis.info('commandstats');
  const sentBy = new Set(['evalsha', 'eval', 'get', 'pttl']);
  let sent = 0;
  let executed = 0;
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    if (m[1] === 'info' || m[1]?.startsWith('config')) continue;
    executed += Number(m[2]);
    if (sentBy.has(m[1] ?? '')) sent += Number(m[2]);
  }
  return { sent, executed };
}

async function startRedis(): Promise<{ proc: ChildProcess; admin: Redis }> {
  const proc = spawn('redis-server', ['--port', String(REDIS_PORT), '--bind', '127.0.0.1', '--save', ''], {
    stdio: 'ignore',
  });
  const deadline = Date.now() + 10_000;
  for (;;) {
    const admin = new Redis(REDIS_PORT, '127.0.0.1', { lazyConnect: true, retryStrategy: () => null });
    admin.on('error', () => undefined);
    try {
      await admin.connect();
      await admin.ping();
      return { proc, admin };
    } catch (err) {
      admin.disconnect();
      if (Date.now() > deadline) throw new Error(`redis-server did not start on ${REDIS_PORT}`, { cause: err });
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function startEcho(): Promise<Server> {
  const server = new Server();
  const answer = { overall_code: 'OK', statuses: [] };
  server.addService(Service.service, {
    ShouldRateLimit: (_call: unknown, cb: (e: null, r: unknown) => void) => cb(null, answer),
  });
  await new Promise<number>((res, rej) =>
    server.bindAsync(`127.0.0.1:${ECHO_PORT}`, ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
  );
  return server;
}

async function startRls(config: RateLimitConfig): Promise<{ server: RunningServer; limiter: Limiter; close(): void }> {
  const redis = createRedis({
    url: `redis://127.0.0.1:${REDIS_PORT}`,
    autoPipelining: process.env['BENCH_AUTOPIPELINE'] !== '0',
  });
  registerScripts(redis);
  const limiter = new Limiter({ redis, config, log, registry: new Registry(), keyPrefix: 'rlbench:' });
  const server = await startServer({
    services: createGatewayServer({ limiter, log }),
    host: '127.0.0.1',
    port: RLS_PORT,
    log,
  });
  return { server, limiter, close: () => redis.disconnect() };
}

/** One call through a grpc-js client, to be sure the frame decodes to what the scenario means. */
function askOnce(req: RateLimitRequest): Promise<string> {
  const client = new Service(`127.0.0.1:${RLS_PORT}`, credentials.createInsecure()) as unknown as {
    ShouldRateLimit(req: RateLimitRequest, cb: (e: Error | null, r: { overall_code: string }) => void): void;
    close(): void;
  };
  return new Promise((resolve, reject) =>
    client.ShouldRateLimit(req, (e, r) => {
      client.close();
      if (e) reject(e);
      else resolve(r.overall_code);
    }),
  );
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

interface Measured {
  reqPerSec: number;
  /** CPU of this process (the server under test) per request, µs. */
  cpuUs: number;
  /** CPU of the private redis-server per request, µs. */
  redisCpuUs: number;
  sent: number;
  executed: number;
}

async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const get = (k: string): number => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
  return get('used_cpu_user') + get('used_cpu_sys');
}

/** One h2load run against a port, with this process's and Redis's CPU and Redis commands per request. */
async function measure(admin: Redis, port: number, file: string): Promise<Measured> {
  await admin.config('RESETSTAT');
  const before = await commandCalls(admin);
  const redisCpu = await redisCpuSeconds(admin);
  const cpu = process.cpuUsage();
  const run = await h2load(port, file);
  const used = process.cpuUsage(cpu);
  const after = await commandCalls(admin);
  const n = run.succeeded;
  return {
    reqPerSec: run.reqPerSec,
    cpuUs: (used.user + used.system) / n,
    redisCpuUs: (((await redisCpuSeconds(admin)) - redisCpu) * 1e6) / n,
    sent: (after.sent - before.sent) / n,
    executed: (after.executed - before.executed) / n,
  };
}

const work = mkdtempSync(join(tmpdir(), 'rls-bench-'));
const { proc: redisProc, admin } = await startRedis();
const results: Record<string, Measured[]> = { echo: [], counted: [], 'over-limit': [] };
try {
  const echo = await startEcho();
  const countedFile = join(work, 'counted.bin');
  const overFile = join(work, 'over.bin');
  writeFileSync(countedFile, grpcFrame(grabRequest('bench-counted-user')));
  writeFileSync(overFile, grpcFrame(grabRequest('bench-presser')));

  for (let round = 0; round < ROUNDS; round++) {
    results['echo']?.push(await measure(admin, ECHO_PORT, countedFile));

    for (const [name, config, file, req] of [
      ['counted', countedConfig(), countedFile, grabRequest('bench-counted-user')],
      ['over-limit', parseConfig(shippedYaml), overFile, grabRequest('bench-presser')],
    ] as const) {
      if (!SCENARIOS.includes(name)) continue;
      await deleteKeys(admin, 'rlbench:*'); // a fresh start for each scenario (private server anyway)
      const rls = await startRls(config);
      if (name === 'over-limit') {
        // Spend the user's tokens first, so the whole run is refusals.
        let code = 'OK';
        for (let i = 0; i < 100 && code === 'OK'; i++) code = await askOnce(req);
        if (code !== 'OVER_LIMIT') throw new Error('the bench user never went over the limit');
      } else if ((await askOnce(req)) !== 'OK') throw new Error('counted scenario refused a request');
      results[name]?.push(await measure(admin, RLS_PORT, file));
      await rls.server.shutdown(2000);
      rls.close();
    }
  }
  echo.forceShutdown();
} finally {
  admin.disconnect();
  redisProc.kill('SIGTERM');
  rmSync(work, { recursive: true, force: true });
}

const JSON_OUT = process.argv.includes('--json');
/** The table: on stderr with --json, so that stdout is the JSON alone. */
const say = (line: string): void => void (JSON_OUT ? process.stderr : process.stdout).write(`${line}\n`);
const med = (name: string, f: (m: Measured) => number): number => median((results[name] ?? []).map(f));
const echoRps = med('echo', (m) => m.reqPerSec);
const echoCpu = med('echo', (m) => m.cpuUs);
say(
  `RLS bench: h2load -n ${REQUESTS} -c ${CONNECTIONS} -m ${STREAMS} -t 1, ${ROUNDS} rounds, medians; ` +
    'servers on one Node thread, h2load and redis-server beside them on 2 shared cores: noisy (+-10-25%).',
);
say(`${startLoad} at the start, ${loadAverage()} at the end`);
// npm run bench:rls passes gateway's own V8 flags (its npm start): the RLS runs in this process
say(`node flags: ${process.execArgv.join(' ') || '(none)'}`);
const row = (cells: string[]): string => cells.map((c, i) => (i ? c.padStart(12) : c.padEnd(11))).join(' ');
say(row(['scenario', 'req/s', 'x echo', 'node us/req', 'echo/node', 'redis us/req', 'calls/req', 'cmds/req']));
for (const name of ['echo', 'counted', 'over-limit']) {
  if (!results[name]?.length) continue;
  const rps = med(name, (m) => m.reqPerSec);
  const cpu = med(name, (m) => m.cpuUs);
  say(
    row([
      name,
      rps.toFixed(0),
      (rps / echoRps).toFixed(2),
      cpu.toFixed(1),
      (echoCpu / cpu).toFixed(2),
      med(name, (m) => m.redisCpuUs).toFixed(1),
      med(name, (m) => m.sent).toFixed(5),
      med(name, (m) => m.executed).toFixed(5),
    ]),
  );
  say(`  runs: ${(results[name] ?? []).map((m) => m.reqPerSec.toFixed(0)).join(', ')} req/s`);
}
if (JSON_OUT) {
  const scenario = (name: string) =>
    results[name]?.length
      ? {
          reqPerSec: med(name, (m) => m.reqPerSec),
          cpuUs: med(name, (m) => m.cpuUs),
          redisCpuUs: med(name, (m) => m.redisCpuUs),
          sentPerReq: med(name, (m) => m.sent),
          executedPerReq: med(name, (m) => m.executed),
        }
      : null;
  const counted = scenario('counted');
  console.log(
    JSON.stringify(
      {
        rls_cpu_us: counted?.cpuUs ?? null,
        echo_cpu_us: echoCpu,
        requests: REQUESTS,
        rounds: ROUNDS,
        echo: scenario('echo'),
        counted,
        overLimit: scenario('over-limit'),
      },
      null,
      2,
    ),
  );
}

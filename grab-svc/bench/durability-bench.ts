/**
 * `npm run bench:durability`: what each REDIS_DURABILITY policy costs a grab, in one run. Redis
 * servers of its own: one without AOF (policy none), one with `appendfsync everysec`
 * (aof-everysec), one with `appendfsync always` (aof), and a local Redis Cluster (3 masters, 3
 * replicas) without and with WAIT 1 (replicas). BENCH_WINS grabs a round (default 20,000), each a
 * new winner, BENCH_CONCURRENCY in flight (default 200), through grab() in this process (the
 * Redis side of the cost: no gRPC in front), the set-ups alternating, BENCH_ROUNDS rounds
 * (default 3), medians; Redis CPU per grab from INFO (used_cpu_sys + used_cpu_user).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createLogger, createRedis, type Identity, type RedisClient } from '@redpacket/lib';
import { pollUntil, startRedisCluster, startRedisServer, type TestRedisServer } from '@redpacket/lib/testing';
import { freePort } from '@redpacket/loadgen';
import { Outcome } from '@redpacket/proto';
import { Cluster } from 'ioredis';
import { z } from 'zod';
import { writeOpenCampaign } from '@redpacket/grab-svc/campaigns';
import { Durability, type DurabilityPolicy } from '@redpacket/grab-svc/durability';
import { everyoneEligible } from '@redpacket/grab-svc/eligibility-mirror';
import { grab } from '@redpacket/grab-svc/grab';
import { ReplicaAck } from '@redpacket/grab-svc/replica-ack';
import { registerScripts } from '@redpacket/grab-svc/scripts';

const env = z
  .object({
    BENCH_WINS: z.coerce.number().int().min(100).default(20_000),
    BENCH_CONCURRENCY: z.coerce.number().int().min(1).default(200),
    BENCH_ROUNDS: z.coerce.number().int().min(1).max(20).default(3),
  })
  .parse(process.env);

const log = createLogger('durability-bench', 'warn');

interface Setup {
  name: string;
  redis: RedisClient;
  durability: Durability | undefined;
  close(): Promise<void>;
}

const campaign = async (redis: RedisClient, count: number): Promise<string> =>
  (await writeOpenCampaign(redis, { id: `db${randomBytes(5).toString('hex')}`, count, totalCents: count })).id;

/** Seconds of CPU the Redis servers behind `redis` have used so far (every master). */
async function redisCpu(redis: RedisClient): Promise<number> {
  const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis];
  let sum = 0;
  for (const n of nodes) {
    const info = await n.info('cpu');
    for (const k of ['used_cpu_sys', 'used_cpu_user']) sum += Number(new RegExp(`^${k}:(\\S+)`, 'm').exec(info)?.[1]);
  }
  return sum;
}

interface Round {
  rps: number;
  p50: number;
  p99: number;
  redisUs: number;
}

async function round(s: Setup): Promise<Round> {
  const c = await campaign(s.redis, env.BENCH_WINS);
  const lat: number[] = [];
  let next = 0;
  const cpu0 = await redisCpu(s.redis);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: env.BENCH_CONCURRENCY }, async () => {
      for (let i = next++; i < env.BENCH_WINS; i = next++) {
        const who: Identity = { userId: `u${i}`, role: 'user', openedAtMs: undefined };
        const t = performance.now();
        const r = await grab(
          s.redis,
          everyoneEligible,
          who,
          { campaignId: c, requestId: `r${i}` },
          undefined,
          '',
          s.durability,
        );
        lat.push(performance.now() - t);
        if (r.outcome !== Outcome.WON) throw new Error(`${s.name}, grab ${i}: ${r.outcome}, not WON`);
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  const cpu = (await redisCpu(s.redis)) - cpu0;
  lat.sort((a, b) => a - b);
  const at = (q: number): number => lat[Math.floor(lat.length * q)] ?? 0;
  return { rps: env.BENCH_WINS / secs, p50: at(0.5), p99: at(0.99), redisUs: (cpu * 1e6) / env.BENCH_WINS };
}

async function single(name: string, policy: DurabilityPolicy, appendfsync?: 'always' | 'everysec'): Promise<Setup> {
  const dir = appendfsync ? mkdtempSync(join(tmpdir(), 'rp-durability-')) : undefined;
  const server: TestRedisServer = await startRedisServer(await freePort(), { appendfsync, dir });
  const redis = createRedis({ url: server.url, autoPipelining: true });
  registerScripts(redis);
  const durability = policy === 'none' ? undefined : new Durability({ policy, redis, log });
  await durability?.start();
  return {
    name,
    redis,
    durability,
    async close() {
      durability?.stop();
      redis.disconnect();
      await server.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

const setups: Setup[] = [];
const cluster = await startRedisCluster();
try {
  setups.push(await single('single Redis, no AOF (none)          ', 'none'));
  setups.push(await single('AOF appendfsync everysec (aof-everysec)', 'aof-everysec', 'everysec'));
  setups.push(await single('AOF appendfsync always (aof)          ', 'aof', 'always'));
  const credis = createRedis({ url: '', clusterNodes: cluster.nodes, autoPipelining: true });
  registerScripts(credis);
  await pollUntil('the cluster client', () => credis.status === 'ready', 10_000);
  const ackRedis = createRedis({ url: '', clusterNodes: cluster.nodes });
  const ack = new ReplicaAck({ redis: ackRedis, replicas: 1, timeoutMs: 1000, log });
  setups.push({
    name: 'Redis Cluster, no wait (none)          ',
    redis: credis,
    durability: undefined,
    close: async () => {},
  });
  setups.push({
    name: 'Redis Cluster, WAIT 1 (replicas)       ',
    redis: credis,
    durability: new Durability({ policy: 'replicas', redis: credis, replicaAck: ack, log }),
    async close() {
      credis.disconnect();
      ackRedis.disconnect();
    },
  });
  for (const s of setups) await round(s); // warm-up
  const results = new Map<Setup, Round[]>(setups.map((s) => [s, []]));
  for (let i = 0; i < env.BENCH_ROUNDS; i++) for (const s of setups) results.get(s)!.push(await round(s));
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  console.log(
    `${env.BENCH_WINS} wins a round, ${env.BENCH_CONCURRENCY} in flight, ${env.BENCH_ROUNDS} rounds, medians; ` +
      `grab() in this process, no gRPC`,
  );
  const base = median(results.get(setups[0]!)!.map((r) => r.rps));
  for (const s of setups) {
    const rs = results.get(s)!;
    const rps = median(rs.map((r) => r.rps));
    console.log(
      `${s.name}  ${String(Math.round(rps)).padStart(6)} grabs/s (${(rps / base).toFixed(2)} of none)  ` +
        `p50 ${median(rs.map((r) => r.p50)).toFixed(2)} ms  p99 ${median(rs.map((r) => r.p99)).toFixed(2)} ms  ` +
        `Redis CPU ${median(rs.map((r) => r.redisUs)).toFixed(1)} µs/grab  [${rs.map((r) => Math.round(r.rps)).join(', ')}]`,
    );
  }
} finally {
  for (const s of setups) await s.close();
  await cluster.stop();
}

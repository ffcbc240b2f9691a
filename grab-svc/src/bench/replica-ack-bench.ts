/**
 * `npm run bench:replica-ack`: what REDIS_WAIT_REPLICAS=1 costs a grab on a local Redis Cluster
 * (3 masters, 3 replicas): BENCH_WINS grabs (default 20,000), BENCH_CONCURRENCY in flight (default
 * 200), each a new winner, through grab() in this process, with and without the replica barrier,
 * alternating, BENCH_ROUNDS rounds (default 3), medians. Redis-side cost only: no gRPC in front.
 */
import { randomBytes } from 'node:crypto';
import { createLogger, createRedis, type Identity } from '@redpacket/lib';
import { pollUntil, startRedisCluster } from '@redpacket/lib/testing';
import { Outcome, Split } from '@redpacket/proto';
import { z } from 'zod';
import { validateCreate, writeCampaign } from '../campaigns.js';
import { everyoneEligible } from '../eligibility-mirror.js';
import { grab } from '../grab.js';
import { ReplicaAck } from '../replica-ack.js';
import { registerScripts } from '../scripts.js';

const env = z
  .object({
    BENCH_WINS: z.coerce.number().int().min(100).default(20_000),
    BENCH_CONCURRENCY: z.coerce.number().int().min(1).default(200),
    BENCH_ROUNDS: z.coerce.number().int().min(1).max(20).default(3),
  })
  .parse(process.env);

const cluster = await startRedisCluster();
const redis = createRedis({ url: '', clusterNodes: cluster.nodes, autoPipelining: true });
const ackRedis = createRedis({ url: '', clusterNodes: cluster.nodes });
const log = createLogger('replica-ack-bench', 'warn');
registerScripts(redis);

async function campaign(count: number): Promise<string> {
  const now = Date.now();
  const valid = validateCreate(
    {
      name: 'replica ack bench',
      totalCents: BigInt(count),
      packetCount: count,
      split: Split.EQUAL,
      batches: 1,
      batchIntervalMs: 0n,
      startsAt: new Date(now - 1000),
      expiresAt: new Date(now + 3_600_000),
      ownerId: 'bench',
      eligibility: undefined,
      subPools: undefined,
    },
    now,
  );
  const meta = { ...valid, id: `rab${randomBytes(5).toString('hex')}` };
  await writeCampaign(redis, meta);
  return meta.id;
}

/** Grabs/s and the p99 latency in ms of one round. */
async function round(ack: ReplicaAck | undefined): Promise<{ rps: number; p99: number }> {
  const c = await campaign(env.BENCH_WINS);
  const lat: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: env.BENCH_CONCURRENCY }, async () => {
      for (let i = next++; i < env.BENCH_WINS; i = next++) {
        const who: Identity = { userId: `u${i}`, role: 'user', openedAtMs: undefined };
        const s = performance.now();
        const r = await grab(redis, everyoneEligible, who, { campaignId: c, requestId: `r${i}` }, undefined, '', ack);
        lat.push(performance.now() - s);
        if (r.outcome !== Outcome.WON) throw new Error(`grab ${i}: ${r.outcome}, not WON`);
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  return { rps: env.BENCH_WINS / secs, p99: lat[Math.floor(lat.length * 0.99)] ?? 0 };
}

try {
  await pollUntil('the cluster client', () => redis.status === 'ready', 10_000);
  const off: { rps: number; p99: number }[] = [];
  const on: { rps: number; p99: number }[] = [];
  const ack = new ReplicaAck({ redis: ackRedis, replicas: 1, timeoutMs: 1000, log });
  await round(undefined); // warm-up
  for (let i = 0; i < env.BENCH_ROUNDS; i++) {
    off.push(await round(undefined));
    on.push(await round(ack));
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  const show = (name: string, rs: { rps: number; p99: number }[]): void =>
    console.log(
      `${name}: ${Math.round(median(rs.map((r) => r.rps)))} grabs/s, p99 ${median(rs.map((r) => r.p99)).toFixed(1)} ms ` +
        `[${rs.map((r) => Math.round(r.rps)).join(', ')}]`,
    );
  console.log(
    `${env.BENCH_WINS} wins a round, ${env.BENCH_CONCURRENCY} in flight, ${env.BENCH_ROUNDS} rounds (medians)`,
  );
  show('without the replica barrier', off);
  show('REDIS_WAIT_REPLICAS=1      ', on);
  console.log(
    `barriers: ${ack.stats.barriers} for ${env.BENCH_WINS * env.BENCH_ROUNDS} wins; short: ${ack.stats.short}`,
  );
} finally {
  redis.disconnect();
  ackRedis.disconnect();
  await cluster.stop();
}

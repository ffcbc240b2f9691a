/**
 * REDIS_WAIT_REPLICAS on a real Redis Cluster: a WON is answered only once the replica of the
 * campaign's master has the claim (the replica is stopped with SIGSTOP to make the wait visible),
 * a timeout or a failed wait answers UNAVAILABLE (the retry with the same request id gets the same
 * win once the replica has it), and concurrent wins share their barriers; each
 * barrier's result and latency reach the Prometheus metrics.
 */
import { randomBytes } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { createLogger, createRedis, keys, ServiceError, type Identity } from '@redpacket/lib';
import { metricValue, pollUntil, startRedisCluster, type TestRedisCluster } from '@redpacket/lib/testing';
import { Outcome } from '@redpacket/proto';
import type { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { writeOpenCampaign } from '../src/campaigns.js';
import { Durability } from '../src/durability.js';
import { everyoneEligible } from '../src/eligibility-mirror.js';
import { grab } from '../src/grab.js';
import { ANSWER_GRACE_MS, ReplicaAck } from '../src/replica-ack.js';
import { registerScripts } from '../src/scripts.js';

const log = createLogger('replica-ack-test', 'silent');
let cluster: TestRedisCluster;
let redis: Cluster;
let ackRedis: Cluster;
const stopped = new Set<number>();

beforeAll(async () => {
  cluster = await startRedisCluster();
  redis = createRedis({ url: '', clusterNodes: cluster.nodes, autoPipelining: true }) as Cluster;
  ackRedis = createRedis({ url: '', clusterNodes: cluster.nodes }) as Cluster;
  registerScripts(redis);
  // Until its first sync is done a replica acknowledges nothing: wait for all three.
  await pollUntil(
    'every replica in sync and listed',
    // A node or the client still connecting answers with an error: not yet.
    () => inSync().catch(() => false),
    30_000,
    100,
  );
});

afterAll(async () => {
  for (const pid of stopped) process.kill(pid, 'SIGCONT');
  redis?.disconnect();
  ackRedis?.disconnect();
  await cluster?.stop();
});

async function inSync(): Promise<boolean> {
  const infos = await Promise.all(cluster.ports.map((p) => cluster.node(p).info('replication')));
  const replicas = infos.filter((i) => i.includes('role:slave'));
  const slots = (await redis.cluster('SLOTS')) as unknown as unknown[][];
  return (
    replicas.length === 3 &&
    replicas.every((i) => i.includes('master_link_status:up')) &&
    slots.every((s) => s.length >= 4)
  );
}

const campaign = async (count: number): Promise<string> =>
  (await writeOpenCampaign(redis, { id: `ra${randomBytes(5).toString('hex')}`, count })).id;

/** The replica of the master serving a campaign's slot (as the master itself reports it). */
async function replicaOf(campaignId: string): Promise<{ conn: Redis; pid: number }> {
  const slot = Number(await redis.cluster('KEYSLOT', keys.claims(campaignId)));
  const slots = (await redis.cluster('SLOTS')) as unknown as [number, number, [string, number]][];
  const master = slots.find(([from, to]) => slot >= from && slot <= to)?.[2][1];
  if (master === undefined) throw new Error(`slot ${slot} not served`);
  const port = Number(/slave0:ip=[^,]+,port=(\d+)/.exec(await cluster.node(master).info('replication'))?.[1]);
  if (!port) throw new Error(`the master on ${master} reports no replica`);
  const conn = cluster.node(port);
  await conn.call('READONLY');
  const pid = Number(/process_id:(\d+)/.exec(await conn.info('server'))?.[1]);
  return { conn, pid };
}

/** The replica-wait metrics now: waits by result, and the barrier's dependency latency series. */
async function waitMetrics(): Promise<Record<string, number>> {
  const op = { op: 'replica_wait' };
  return {
    acked: await metricValue('redpacket_replica_waits_total', { result: 'acked' }),
    timed_out: await metricValue('redpacket_replica_waits_total', { result: 'timed_out' }),
    failed: await metricValue('redpacket_replica_waits_total', { result: 'failed' }),
    calls: await metricValue('redpacket_dependency_duration_seconds_count', op),
    seconds: await metricValue('redpacket_dependency_duration_seconds_sum', op),
    errors: await metricValue('redpacket_dependency_errors_total', op),
  };
}

/** How much each replica-wait metric moved since `before`. */
async function waitMetricsSince(before: Record<string, number>): Promise<Record<string, number>> {
  const now = await waitMetrics();
  return Object.fromEntries(Object.entries(now).map(([k, v]) => [k, v - (before[k] ?? 0)]));
}

const user = (id: string): Identity => ({ userId: id, role: 'user', openedAtMs: undefined });
const grabAs = (c: string, u: string, ack: ReplicaAck) =>
  grab(
    redis,
    everyoneEligible,
    user(u),
    { campaignId: c, requestId: `r-${u}` },
    undefined,
    '',
    new Durability({ policy: 'replicas', redis, replicaAck: ack, log }),
  );
/** The grab's gRPC error (it must fail). */
const refused = async (p: Promise<unknown>): Promise<ServiceError> => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof ServiceError)) throw new Error(`expected a ServiceError, got ${String(err)}`);
  return err;
};

function stop(pid: number): void {
  process.kill(pid, 'SIGSTOP');
  stopped.add(pid);
}
function resume(pid: number): void {
  process.kill(pid, 'SIGCONT');
  stopped.delete(pid);
}

it('a WON is answered only once the replica has the claim', async () => {
  const c = await campaign(10);
  const replica = await replicaOf(c);
  const ack = new ReplicaAck({ redis: ackRedis, replicas: 1, timeoutMs: 10_000, log });
  const before = await waitMetrics();
  expect((await grabAs(c, 'warm', ack)).outcome).toBe(Outcome.WON);

  stop(replica.pid);
  let answered = false;
  const pending = grabAs(c, 'alice', ack).then((r) => {
    answered = true;
    return r;
  });
  // The claim is on the master at once; the answer waits while the replica cannot have it.
  await new Promise((r) => setTimeout(r, 500));
  expect(await redis.hexists(keys.claims(c), 'alice')).toBe(1);
  expect(answered).toBe(false);
  resume(replica.pid);
  const res = await pending;
  expect(res.outcome).toBe(Outcome.WON);
  expect(await replica.conn.hget(keys.claims(c), 'alice')).toMatch(new RegExp(`^${res.packetId}\\|`));
  expect(ack.stats.short).toBe(0);
  // one acked wait a barrier (warm's, alice's), each timed; alice's lasted the 500 ms stop
  const moved = await waitMetricsSince(before);
  expect(ack.stats.barriers).toBe(2);
  expect(moved).toMatchObject({ acked: 2, timed_out: 0, failed: 0, calls: 2, errors: 0 });
  expect(moved['seconds']).toBeGreaterThanOrEqual(0.45);
});

it('past the timeout the win is not answered: UNAVAILABLE, and the retry with the same request id gets the same win', async () => {
  const c = await campaign(10);
  const replica = await replicaOf(c);
  const ack = new ReplicaAck({ redis: ackRedis, replicas: 1, timeoutMs: 300, log });
  const before = await waitMetrics();
  stop(replica.pid);
  const t0 = Date.now();
  const err = await refused(grabAs(c, 'bob', ack));
  const ms = Date.now() - t0;
  resume(replica.pid);
  expect(err.code).toBe(status.UNAVAILABLE);
  expect(err.message).toMatch(/not yet on 1 replica.*retry with the same request_id/);
  expect(ms).toBeGreaterThanOrEqual(250);
  expect(ms).toBeLessThan(5000);
  expect(ack.stats.short).toBe(1);
  const moved = await waitMetricsSince(before);
  expect(moved).toMatchObject({ acked: 0, timed_out: 1, failed: 0, calls: 1, errors: 0 });
  expect(moved['seconds']).toBeGreaterThanOrEqual(0.25);
  // The claim stayed on the master; once the replica has it, the retry is answered with it.
  const claim = await redis.hget(keys.claims(c), 'bob');
  const res = await grabAs(c, 'bob', ack);
  expect(res.outcome).toBe(Outcome.WON);
  expect(claim).toMatch(new RegExp(`^${res.packetId}\\|${res.amountCents}\\|r-bob\\|`));
  expect(await replica.conn.hget(keys.claims(c), 'bob')).toBe(claim);
});

it('a wait that fails answers UNAVAILABLE, counted as failed', async () => {
  const c = await campaign(10);
  // Sent to the pool's replica instead of its master, the barrier is refused by Redis (MOVED).
  const replica = await replicaOf(c);
  const ack = new ReplicaAck({ redis: replica.conn, replicas: 1, timeoutMs: 10_000, log });
  const before = await waitMetrics();
  const err = await refused(grabAs(c, 'carol', ack));
  expect(err.code).toBe(status.UNAVAILABLE);
  expect(ack.stats.short).toBe(1);
  expect(await waitMetricsSince(before)).toMatchObject({ acked: 0, timed_out: 0, failed: 1, calls: 1, errors: 1 });
});

it('a master that never answers the barrier does not hold the caller: UNAVAILABLE after the timeout and a grace', async () => {
  const c = await campaign(10);
  // A stopped node never answers: the barrier sent there stands for a master lost mid-wait.
  const replica = await replicaOf(c);
  const ack = new ReplicaAck({ redis: replica.conn, replicas: 1, timeoutMs: 200, log });
  const before = await waitMetrics();
  stop(replica.pid);
  const t0 = Date.now();
  const err = await refused(grabAs(c, 'dave', ack));
  const ms = Date.now() - t0;
  resume(replica.pid);
  expect(err.code).toBe(status.UNAVAILABLE);
  expect(ms).toBeGreaterThanOrEqual(200 + ANSWER_GRACE_MS - 50);
  expect(ms).toBeLessThan(10_000);
  expect(await waitMetricsSince(before)).toMatchObject({ acked: 0, timed_out: 0, failed: 1, calls: 1, errors: 1 });
});

it('2,000 concurrent wins share their barriers, and every answered win is on the replica', async () => {
  const c = await campaign(2000);
  const replica = await replicaOf(c);
  const ack = new ReplicaAck({ redis: ackRedis, replicas: 1, timeoutMs: 10_000, log });
  const before = await waitMetrics();
  const results = await Promise.all(
    Array.from({ length: 2000 }, async (_, i) => {
      const r = await grabAs(c, `u${i}`, ack);
      // Read from the replica as soon as this win is answered.
      return { won: r.outcome === Outcome.WON, onReplica: await replica.conn.hexists(keys.claims(c), `u${i}`) };
    }),
  );
  expect(results.filter((r) => r.won)).toHaveLength(2000);
  expect(results.filter((r) => r.onReplica === 1)).toHaveLength(2000);
  expect(ack.stats.barriers).toBeGreaterThan(0);
  expect(ack.stats.barriers).toBeLessThan(500);
  expect(ack.stats.short).toBe(0);
  // the metrics count barriers, not wins
  expect(await waitMetricsSince(before)).toMatchObject({ acked: ack.stats.barriers, timed_out: 0, failed: 0 });
});

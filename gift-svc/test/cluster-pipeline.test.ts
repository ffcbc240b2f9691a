/**
 * The win pipeline with grab-svc's Redis on a real Redis Cluster and every part doubled, as N
 * replicas run it: grabs -> outbox -> two relays (one consumer group) -> RabbitMQ (quorum queue)
 * -> two gift consumers -> MySQL, exact reconcile; then two settle timers at once settle once.
 * And the relay's outbox gauge over a campaign's sub-pool outboxes, on different slots.
 */
import type { Cluster } from 'ioredis';
import type { RowDataPacket } from 'mysql2/promise';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Pool } from '@redpacket/db';
import { createRedis, keys, poolId } from '@redpacket/lib';
import { metricValue, pollUntil, startRedisCluster, type TestRedisCluster } from '@redpacket/lib/testing';
import { OutboxRelay } from '@redpacket/grab-svc/relay/outbox-relay';
import { topologyWithSuffix } from '@redpacket/wins';
import { closeCampaign } from '@redpacket/grab-svc/campaigns';
import { reconcileCampaign, refundKey } from '@redpacket/grab-svc/settle';
import { settleEnded } from '@redpacket/grab-svc/settle-timer';
import {
  awardCount,
  dropCampaign,
  dropTopology,
  grabMany,
  makeCampaign,
  queueDepth,
  requireMysql,
  requireTopology,
  silent,
  testGift,
  testRelay,
} from './harness.js';

let cluster: TestRedisCluster;
let redis: Cluster;
let pool: Pool;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  pool = await requireMysql();
  cluster = await startRedisCluster();
  redis = createRedis({ url: '', clusterNodes: cluster.nodes }) as Cluster;
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await pool?.end();
  redis?.disconnect();
  await cluster?.stop();
});

/** A grab-svc replica's relay connection to the cluster. */
function clusterClient(): Cluster {
  const c = createRedis({ url: '', clusterNodes: cluster.nodes }) as Cluster;
  cleanups.push(async () => c.disconnect());
  return c;
}

it('two relays and two gift consumers on the cluster: every win credited once, reconciled, settled once', async () => {
  const t = await requireTopology();
  const total = 1_500_000;
  const meta = await makeCampaign(redis, pool, { count: 3000, totalCents: total });
  cleanups.push(
    () => dropTopology(t),
    () => dropCampaign(redis, pool, meta.id),
  );
  // Two replicas' relays share the outbox's consumer group: each entry goes to one of them (or,
  // after a crash, to both, which gift-svc's unique keys absorb).
  const relays = await Promise.all(
    [1, 2].map(async (n) => {
      const r = await testRelay(t, [meta.id], {
        redis: clusterClient(),
        batchSize: 50,
        connectionName: `test-relay-${n}-${t.queue}`,
      });
      cleanups.push(r.stop);
      return r.relay;
    }),
  );
  const gifts = await Promise.all(
    [1, 2].map(async (n) => {
      const g = await testGift(t, pool, { batchSize: 100, connectionName: `test-gift-${n}-${t.queue}` });
      cleanups.push(() => g.stop());
      return g;
    }),
  );

  // 2,500 users for 3,000 packets: a refund is left to settle.
  const won = await grabMany(redis, meta.id, 2500);
  expect(won).toBe(2500);
  await pollUntil('every win credited', async () => (await awardCount(pool, meta.id)).n === won, 60_000, 50);
  await pollUntil('outbox drained', async () => (await redis.xlen(keys.outbox(meta.id))) === 0, 20_000, 50);
  expect(await awardCount(pool, meta.id)).toEqual({ n: won, distinct: won });
  // Both relays and both consumers took part; nothing was published less than once.
  for (const r of relays) expect(r.stats.published).toBeGreaterThan(0);
  expect(relays.reduce((a, r) => a + r.stats.published, 0)).toBeGreaterThanOrEqual(won);
  for (const g of gifts) expect(g.stats.credited).toBeGreaterThan(0);
  expect(gifts.reduce((a, g) => a + g.stats.credited, 0)).toBe(won);
  const rec = await reconcileCampaign(redis, pool, meta.id);
  expect(rec.differences).toEqual([]);
  expect(rec).toMatchObject({ consistent: true, packetsClaimedRedis: won, packetsDeliveredMysql: won });

  // Two replicas' settle timers fire at once on the closed campaign: it is settled once.
  await closeCampaign(redis, meta.id, 'test over');
  const timer = { redis, pool, log: silent, campaigns: async () => [meta.id] };
  const passes = await Promise.all([settleEnded(timer), settleEnded({ ...timer, redis: clusterClient() })]);
  expect(passes.flat()).toEqual([meta.id]);
  const [settlements] = await pool.query<RowDataPacket[]>(
    'SELECT amount_awarded_cents AS awarded, refund_cents AS refund FROM settlements WHERE campaign_id = ?',
    [meta.id],
  );
  expect(settlements).toHaveLength(1);
  expect(Number(settlements[0]?.['awarded']) + Number(settlements[0]?.['refund'])).toBe(total);
  // one refund transfer, escrow -> owner
  const [refunds] = await pool.query<RowDataPacket[]>('SELECT amount_cents FROM transfers WHERE idempotency_key = ?', [
    refundKey(meta.id),
  ]);
  expect(Number(settlements[0]?.['refund'])).toBeGreaterThan(0);
  expect(refunds.map((r) => Number(r['amount_cents']))).toEqual([Number(settlements[0]?.['refund'])]);
  expect(await redis.hget(keys.meta(meta.id), 'settled')).toBe('1');
});

it('redpacket_outbox_length sums the XLEN of sub-pool outboxes on different slots, and reads 0 once relayed', async () => {
  const t = await requireTopology();
  const meta = await makeCampaign(redis, pool, { count: 30, totalCents: 3000, subPools: 3 });
  cleanups.push(
    () => dropTopology(t),
    () => dropCampaign(redis, pool, meta.id),
  );
  const pools = [0, 1, 2].map((p) => poolId(meta.id, p));
  const slotOf = async (key: string): Promise<number> => Number(await redis.cluster('KEYSLOT', key));
  expect(new Set(await Promise.all(pools.map((p) => slotOf(keys.outbox(p))))).size).toBe(3);
  // A different number of wins in each pool's outbox: a sum that left out any of them would differ.
  const wins = [2, 3, 4];
  for (const [p, n] of wins.entries()) expect(await grabMany(redis, pools[p] as string, n, `p${p}-`)).toBe(n);
  const lengths = await Promise.all(pools.map((p) => redis.xlen(keys.outbox(p))));
  expect(lengths).toEqual(wins);
  const gauge = (): Promise<number> => metricValue('redpacket_outbox_length', { campaign: meta.id });

  // Publishing held back: a relay whose broker is unreachable reads the outboxes, confirms nothing.
  const held = new OutboxRelay({
    redis: clusterClient(),
    amqpUrl: 'amqp://guest:guest@127.0.0.1:17198',
    topology: topologyWithSuffix(`held-${t.queue}`),
    connectionName: `test-relay-held-${t.queue}`,
    log: silent,
    campaigns: async () => [meta.id],
    maxBackoffMs: 100,
  });
  held.start();
  try {
    await pollUntil('the relay to report the outboxes', async () => (await gauge()) > 0);
    expect(await gauge()).toBe(9);
    expect(held.stats.published).toBe(0);
  } finally {
    await held.stop();
  }

  // A relay that can publish drains every pool's outbox (taking over the entries the held one had
  // read, as from a relay that died, after claimIdleMs); the gauge follows.
  const r = await testRelay(t, [meta.id], {
    redis: clusterClient(),
    connectionName: `test-relay-drain-${t.queue}`,
    claimIdleMs: 200,
  });
  cleanups.push(r.stop);
  await pollUntil('nine wins queued', async () => (await queueDepth(t.queue)) === 9, 20_000, 50);
  await pollUntil('the gauge to read 0', async () => (await gauge()) === 0, 10_000, 50);
  expect(await Promise.all(pools.map((p) => redis.xlen(keys.outbox(p))))).toEqual([0, 0, 0]);
  expect(r.relay.stats.published).toBe(9);
});

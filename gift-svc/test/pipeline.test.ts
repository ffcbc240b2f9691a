/**
 * The whole win pipeline against the real Redis, RabbitMQ and MySQL: grab script -> outbox ->
 * relay -> RabbitMQ -> gift consumer -> MySQL, through the faults a production run meets.
 * Every test ends in an exact reconcile and, after settling, awards + refund = total.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { Pool } from '@redpacket/db';
import { keys, poolId } from '@redpacket/lib';
import {
  pollUntil,
  requireRedis,
  TEST_AMQP_URL,
  TEST_MYSQL_URL,
  TEST_REDIS_URL,
  testSigner,
} from '@redpacket/lib/testing';
import type { Topology } from '@redpacket/wins';
import type { OutboxRelay } from '@redpacket/grab-svc/relay/outbox-relay';
import { closeCampaign } from '@redpacket/grab-svc/campaigns';
import { reconcileCampaign, settleCampaign } from '@redpacket/grab-svc/settle';
import { ELIGIBLE } from '@redpacket/grab-svc/eligibility-mirror';
import { grabPooled } from '@redpacket/grab-svc/sub-pools';
import type { GiftConsumer } from '../src/consumer.js';
import {
  awardCount,
  closeRabbitConnections,
  dropCampaign,
  dropTopology,
  grabMany,
  ledgerProblems,
  makeCampaign,
  requireMysql,
  requireTopology,
  testGift,
  testRelay,
} from './harness.js';

let redis: Redis;
let pool: Pool;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  redis = await requireRedis();
  pool = await requireMysql();
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await pool.end();
  redis.disconnect();
});

async function setup(count: number, totalCents: number): Promise<{ t: Topology; id: string }> {
  const t = await requireTopology();
  const meta = await makeCampaign(redis, pool, { count, totalCents });
  cleanups.push(
    () => dropTopology(t),
    () => dropCampaign(redis, pool, meta.id),
  );
  return { t, id: meta.id };
}

async function relayFor(t: Topology, id: string, extra: { claimIdleMs?: number } = {}): Promise<OutboxRelay> {
  const { relay, stop } = await testRelay(t, [id], extra);
  cleanups.push(stop);
  return relay;
}

async function giftFor(t: Topology): Promise<GiftConsumer> {
  const gift = await testGift(t, pool);
  cleanups.push(() => gift.stop());
  return gift;
}

/** Waits for every win to be in MySQL and out of the outbox; then closes, reconciles and settles. */
async function finish(id: string, won: number, totalCents: number): Promise<void> {
  await pollUntil('every win credited', async () => (await awardCount(pool, id)).n === won, 60_000, 50);
  await pollUntil('outbox drained', async () => (await redis.xlen(keys.outbox(id))) === 0, 20_000, 50);
  expect(await awardCount(pool, id)).toEqual({ n: won, distinct: won });
  const rec = await reconcileCampaign(redis, pool, id);
  expect(rec.differences).toEqual([]);
  expect(rec).toMatchObject({ consistent: true, packetsClaimedRedis: won, packetsDeliveredMysql: won });
  expect(rec.amountDeliveredMysqlCents).toBe(rec.amountClaimedRedisCents);
  await closeCampaign(redis, id, 'test over');
  const s = await settleCampaign(redis, pool, id);
  expect(s.alreadySettled).toBe(false);
  expect(s.packetsAwarded).toBe(won);
  expect(s.amountAwardedCents + s.refundCents).toBe(BigInt(totalCents));
  expect(s.amountAwardedCents).toBe(rec.amountDeliveredMysqlCents);
  expect(await ledgerProblems(pool, id)).toEqual([]);
}

describe('a hot campaign with sub-pools', () => {
  it("relays every pool's outbox, reconciles over all pools and settles to the cent", async () => {
    const S = 4;
    const t = await requireTopology();
    const meta = await makeCampaign(redis, pool, { count: 600, totalCents: 300_000, subPools: S });
    cleanups.push(
      () => dropTopology(t),
      async () => {
        for (let p = 1; p < S; p++) await dropCampaign(redis, pool, poolId(meta.id, p));
        await dropCampaign(redis, pool, meta.id);
      },
    );
    await relayFor(t, meta.id);
    await giftFor(t);
    // 900 users for 600 packets: home pools run dry, so wins also come from the other pools
    const replies = await Promise.all(
      Array.from({ length: 900 }, (_, i) =>
        grabPooled(redis, {
          campaignId: meta.id,
          pools: S,
          userId: `hot${i}`,
          requestId: `r${i}`,
          openedAtMs: undefined,
          verdict: ELIGIBLE,
        }),
      ),
    );
    const won = replies.filter((r) => r[0] === 1).length;
    expect(won).toBe(600);
    const perPool = await Promise.all(Array.from({ length: S }, (_, p) => redis.hlen(keys.claims(poolId(meta.id, p)))));
    expect(perPool.every((n) => n > 0)).toBe(true);
    await pollUntil('every win credited', async () => (await awardCount(pool, meta.id)).n === won, 60_000, 50);
    for (let p = 0; p < S; p++) {
      await pollUntil(
        `pool ${p}'s outbox drained`,
        async () => (await redis.xlen(keys.outbox(poolId(meta.id, p)))) === 0,
        20_000,
        50,
      );
    }
    const rec = await reconcileCampaign(redis, pool, meta.id);
    expect(rec.differences).toEqual([]);
    expect(rec).toMatchObject({
      consistent: true,
      packetsClaimedRedis: 600,
      packetsDeliveredMysql: 600,
      packetsRemainingRedis: 0,
    });
    await closeCampaign(redis, meta.id, 'test over');
    const s = await settleCampaign(redis, pool, meta.id);
    expect(s.packetsAwarded).toBe(600);
    expect(s.amountAwardedCents + s.refundCents).toBe(300_000n);
    expect(s.refundCents).toBe(0n);
  });
});

describe('win pipeline under faults', () => {
  it('(a) loses and doubles nothing while its RabbitMQ connections are force-closed mid-stream', async () => {
    const { t, id } = await setup(3000, 1_000_000);
    const relay = await relayFor(t, id);
    const gift = await giftFor(t);
    let won = 0;
    let closed = 0;
    // Each wave of grabs runs while the relay's and the consumer's connections are being closed.
    for (let wave = 0; wave < 6; wave++) {
      const [w, r, g] = await Promise.all([
        grabMany(redis, id, 400, `w${wave}-`),
        closeRabbitConnections(`test-relay-${t.queue}`),
        closeRabbitConnections(`test-gift-${t.queue}`),
      ]);
      won += w;
      closed += r + g;
    }
    expect(won).toBe(2400);
    expect(closed).toBeGreaterThanOrEqual(4);
    await finish(id, won, 1_000_000);
    expect(relay.stats.reconnects).toBeGreaterThan(1);
    expect(gift.stats.reconnects).toBeGreaterThan(1);
  });

  it('(b) credits every win once when gift-svc is SIGKILLed mid-batch and restarted', async () => {
    const { t, id } = await setup(2000, 500_000);
    await relayFor(t, id);
    const suffix = t.queue.slice('gift.wins.'.length);
    const won = await grabMany(redis, id, 2000);
    const main = fileURLToPath(new URL('../dist/main.js', import.meta.url));
    const start = (port: number): ChildProcess => {
      const child = spawn(process.execPath, [main], {
        stdio: 'ignore',
        env: {
          PATH: process.env['PATH'],
          ...testSigner().env,
          ...testSigner().env,
          GRPC_PORT: String(port),
          REDIS_URL: TEST_REDIS_URL,
          MYSQL_URL: TEST_MYSQL_URL,
          AMQP_URL: TEST_AMQP_URL,
          WINS_TOPOLOGY_SUFFIX: suffix,
          AMQP_CONNECTION_NAME: `test-giftsvc-${suffix}`,
          // Slow enough to be caught mid-stream, with a batch in every transaction.
          GIFT_RATE: '1500',
          GIFT_BATCH: '50',
          LOG_LEVEL: 'silent',
        },
      });
      cleanups.push(async () => child.kill('SIGKILL'));
      return child;
    };
    const first = start(0);
    await pollUntil('some wins credited', async () => (await awardCount(pool, id)).n >= 300, 30_000, 5);
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    const partial = (await awardCount(pool, id)).n;
    expect(partial).toBeLessThan(won);
    const second = start(0);
    await finish(id, won, 500_000);
    second.kill('SIGTERM');
    await new Promise((r) => second.once('exit', r));
  });

  it('(e) a second relay takes over the entries a SIGKILLed relay left pending', async () => {
    const { t, id } = await setup(1500, 300_000);
    const stream = keys.outbox(id);
    const won = await grabMany(redis, id, 1500);
    // The first relay, a process of its own, reads 900 entries and cannot publish them (its
    // broker address answers nothing), so they sit pending for it when it is killed.
    const relayMain = fileURLToPath(new URL('../../grab-svc/dist/relay/main.js', import.meta.url));
    const doomed = spawn(process.execPath, [relayMain], {
      stdio: 'ignore',
      env: {
        PATH: process.env['PATH'],
        ...testSigner().env,
        REDIS_URL: TEST_REDIS_URL,
        AMQP_URL: 'amqp://guest:guest@127.0.0.1:17198',
        RELAY_CAMPAIGNS: id,
        RELAY_BATCH: '900',
        LOG_LEVEL: 'silent',
      },
    });
    cleanups.push(async () => doomed.kill('SIGKILL'));
    await pollUntil('the first relay holds 900 entries', async () => {
      // Until the relay created the group, XPENDING fails: nothing is pending yet.
      const p = (await redis.xpending(stream, 'relay').catch(() => [0])) as [number];
      return p[0] === 900;
    });
    doomed.kill('SIGKILL');
    await new Promise((r) => doomed.once('exit', r));

    const relay = await relayFor(t, id, { claimIdleMs: 300 });
    await giftFor(t);
    await finish(id, won, 300_000);
    expect(relay.stats.claimed).toBeGreaterThanOrEqual(900);
    const pending = (await redis.xpending(stream, 'relay')) as [number, ...unknown[]];
    expect(pending[0]).toBe(0);
  });
});

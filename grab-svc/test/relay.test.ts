/**
 * The outbox relay's own behaviour: which outboxes it reads, a broker that is down, a deleted
 * outbox, pruning; and grab-svc's main running it, scoped to the campaigns it created.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { depositBudget } from '@redpacket/ledger/testing';
import type { Pool } from '@redpacket/db';
import { keys } from '@redpacket/lib';
import { credentials } from '@grpc/grpc-js';
import { bearer, call, metricValue, pollUntil, requireRedis, testSigner } from '@redpacket/lib/testing';
import { freePort, spawnNode } from '@redpacket/loadgen';
import { AdminServiceClient, Split } from '@redpacket/proto';
import { topologyWithSuffix } from '@redpacket/wins';
import {
  dropCampaign,
  dropTopology,
  grabMany,
  makeCampaign,
  queueDepth,
  requireMysql,
  requireTopology,
  silent,
  testRelay,
} from '../../gift-svc/test/harness.js';
import { closeCampaign } from '../src/campaigns.js';
import { activeOutboxes } from '../src/campaign-index.js';
import { entryToWin, OutboxRelay } from '../src/relay/outbox-relay.js';

let redis: Redis;
let pool: Pool;
const ids: string[] = [];

beforeAll(async () => {
  redis = await requireRedis();
  pool = await requireMysql(2);
});

afterAll(async () => {
  for (const id of ids) await dropCampaign(redis, pool, id);
  await pool.end();
  redis.disconnect();
});

async function campaign(): Promise<string> {
  const m = await makeCampaign(redis, undefined, { count: 10, totalCents: 1000 });
  ids.push(m.id);
  return m.id;
}

describe('OutboxRelay', () => {
  it("turns the grab script's outbox entry into a WinEvent, and a damaged one into a refusable one", () => {
    const fields = ['c', 'camp', 'p', 'pkt', 'u', 'user', 'a', '250', 'r', 'req', 't', '1800000000000'];
    expect(entryToWin('1-0', fields)).toEqual({
      campaignId: 'camp',
      packetId: 'pkt',
      userId: 'user',
      amountCents: 250n,
      requestId: 'req',
      wonAtMs: 1_800_000_000_000n,
      streamId: '1-0',
      // written before trace ids existed: relayed all the same, with none
      traceId: '',
    });
    expect(entryToWin('3-0', [...fields, 'x', 'edge-id-1']).traceId).toBe('edge-id-1');
    // Published anyway (nothing is dropped silently); gift-svc dead-letters it as invalid.
    expect(entryToWin('2-0', ['c', 'camp', 'a', 'lots'])).toMatchObject({ packetId: '', amountCents: 0n });
  });

  it('reads open campaigns and ones with entries left, never ended and drained ones', async () => {
    const open = await campaign();
    const endedWithWins = await campaign();
    const endedDrained = await campaign();
    const settled = await campaign();
    const settledWithEntries = await campaign();
    await grabMany(redis, endedWithWins, 3);
    await grabMany(redis, settledWithEntries, 2);
    for (const id of [endedWithWins, endedDrained]) await closeCampaign(redis, id, 'test');
    for (const id of [settled, settledWithEntries]) await redis.hset(keys.meta(id), 'settled', '1');
    const active = await activeOutboxes(redis);
    expect([open, endedWithWins, endedDrained, settled, settledWithEntries].map((id) => active.includes(id))).toEqual([
      true,
      true,
      false,
      false,
      true,
    ]);
  });

  it('keeps every entry while RabbitMQ is unreachable, and stops promptly', async () => {
    const id = await campaign();
    const own = await requireRedis();
    const relay = new OutboxRelay({
      redis: own,
      // Nothing listens here: every connection attempt fails at once, as with a broker down.
      amqpUrl: 'amqp://guest:guest@127.0.0.1:17199',
      topology: topologyWithSuffix('unreachable'),
      connectionName: 'test-relay-unreachable',
      log: silent,
      campaigns: async () => [id],
      maxBackoffMs: 100,
    });
    relay.start();
    expect(await grabMany(redis, id, 10)).toBe(10);
    // The relay has read the entries (they are pending for it) but cannot publish them.
    await pollUntil('entries read by the relay', async () => {
      // NOGROUP until the relay has made its consumer group: not there yet
      const p = (await redis.xpending(keys.outbox(id), 'relay').catch(() => [0])) as [number];
      return p[0] === 10;
    });
    expect(await redis.xlen(keys.outbox(id))).toBe(10);
    // redpacket_outbox_length, read from Redis at scrape time, shows the backlog
    expect(await metricValue('redpacket_outbox_length', { campaign: id })).toBe(10);
    const t0 = Date.now();
    await relay.stop();
    own.disconnect();
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(relay.stats.published).toBe(0);
    expect(await redis.xlen(keys.outbox(id))).toBe(10);
    // a stopped relay no longer reports its outboxes
    expect(await metricValue('redpacket_outbox_length', { campaign: id })).toBe(0);
  });
});

describe('OutboxRelay, when an outbox is deleted under it', () => {
  it('creates its group again and relays the new entries', async () => {
    const t = await requireTopology();
    const id = await campaign();
    const before = {
      published: await metricValue('redpacket_relay_published_total'),
      lag: await metricValue('redpacket_relay_lag_seconds_count'),
      publish: await metricValue('redpacket_dependency_duration_seconds_count', { op: 'relay_publish_confirm' }),
      ack: await metricValue('redpacket_dependency_duration_seconds_count', { op: 'relay_xack_xdel' }),
      read: await metricValue('redpacket_dependency_duration_seconds_count', { op: 'relay_xreadgroup' }),
    };
    const { relay, stop } = await testRelay(t, [id]);
    try {
      const wonAt = Date.now();
      await grabMany(redis, id, 3, 'a');
      await pollUntil('first wins queued', async () => (await queueDepth(t.queue)) === 3);
      await redis.del(keys.outbox(id));
      await grabMany(redis, id, 4, 'b');
      await pollUntil('later wins queued', async () => (await queueDepth(t.queue)) === 7);
      expect(relay.stats.failures).toBe(0);
      // the relay's metrics moved with the 7 wins it really published
      expect((await metricValue('redpacket_relay_published_total')) - before.published).toBe(7);
      expect((await metricValue('redpacket_relay_lag_seconds_count')) - before.lag).toBe(7);
      const lag = await metricValue('redpacket_relay_last_lag_seconds');
      expect(lag).toBeGreaterThanOrEqual(0);
      expect(lag).toBeLessThan((Date.now() - wonAt) / 1000 + 0.01);
      const calls = async (op: string) => metricValue('redpacket_dependency_duration_seconds_count', { op });
      expect((await calls('relay_publish_confirm')) - before.publish).toBeGreaterThanOrEqual(2);
      expect((await calls('relay_xack_xdel')) - before.ack).toBeGreaterThanOrEqual(2);
      expect((await calls('relay_xreadgroup')) - before.read).toBeGreaterThanOrEqual(2);
      await pollUntil('the outbox gauge to read empty', async () => {
        return (await metricValue('redpacket_outbox_length', { campaign: id })) === 0;
      });
    } finally {
      await stop();
      await dropTopology(t);
    }
  });
});

describe('OutboxRelay, over many restarts', () => {
  it('removes consumers that hold nothing and have gone idle, keeps those holding entries', async () => {
    const t = await requireTopology();
    const id = await campaign();
    const stream = keys.outbox(id);
    await grabMany(redis, id, 2);
    await redis.xgroup('CREATE', stream, 'relay', '0', 'MKSTREAM');
    await redis.xreadgroup('GROUP', 'relay', 'gone-empty', 'COUNT', 1, 'STREAMS', stream, '0');
    await redis.xreadgroup('GROUP', 'relay', 'gone-holding', 'COUNT', 1, 'STREAMS', stream, '>');
    const names = async (): Promise<string[]> =>
      ((await redis.xinfo('CONSUMERS', stream, 'relay')) as unknown[][]).map((c) => String(c[1])).sort();
    expect(await names()).toEqual(['gone-empty', 'gone-holding']);
    // Long claim idle: the entry held by gone-holding stays with it during this test.
    const { relay, stop } = await testRelay(t, [id], { pruneIdleMs: 0, claimIdleMs: 600_000 });
    try {
      await pollUntil('gone-empty removed', async () => !(await names()).includes('gone-empty'));
      expect(await names()).toEqual(['gone-holding', relay.consumer].sort());
    } finally {
      await stop();
      await dropTopology(t);
    }
  });
});

describe("grab-svc's main with its relay", () => {
  it('relays the wins of the campaigns it created (RELAY_SCOPE=created-here), and no others', async () => {
    const t = await requireTopology();
    const suffix = t.queue.slice('gift.wins.'.length);
    const other = await makeCampaign(redis, pool, { count: 20, totalCents: 2000 });
    ids.push(other.id);
    const port = await freePort();
    const child = spawnNode(new URL('../dist/main.js', import.meta.url), [], {
      GRPC_PORT: String(port),
      // The shared test Redis keeps nothing on disk: best effort, opted into explicitly.
      REDIS_DURABILITY: 'none',
      ...testSigner().env,
      WINS_TOPOLOGY_SUFFIX: suffix,
      RELAY_SCOPE: 'created-here',
      RELAY_CONNECTION_NAME: `test-relay-main-${suffix}`,
      SETTLE_EVERY_MS: '0',
    });
    const admin = new AdminServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
    try {
      await child.waitFor(/gRPC server listening/);
      const md = bearer(await testSigner().sign({ userId: 'ops', role: 'admin' }));
      await depositBudget(pool, 'ops', 5000);
      const mine = await call(
        admin.createCampaign,
        admin,
        {
          name: 'relay main',
          totalCents: 5000n,
          packetCount: 50,
          split: Split.RANDOM,
          batches: 1,
          batchIntervalMs: 0n,
          startsAt: undefined,
          expiresAt: new Date(Date.now() + 600_000),
          ownerId: 'ops',
          eligibility: undefined,
        },
        md,
      );
      ids.push(mine.campaignId);
      expect(await grabMany(redis, mine.campaignId, 30, 'm')).toBe(30);
      expect(await grabMany(redis, other.id, 5, 'o')).toBe(5);
      await pollUntil('its wins relayed', async () => (await queueDepth(t.queue)) === 30, 20_000);
      await pollUntil('its outbox drained', async () => (await redis.xlen(keys.outbox(mine.campaignId))) === 0);
      // The campaign it did not create is left alone.
      expect(await redis.xlen(keys.outbox(other.id))).toBe(5);
    } finally {
      admin.close();
      await child.stop();
      await dropTopology(t);
    }
  });
});

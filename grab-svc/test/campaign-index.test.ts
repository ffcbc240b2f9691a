/**
 * The live campaign index against a redis-server of this file's own (the index is one key for
 * the whole Redis): who joins and leaves it, the fill from rp:campaigns on an upgraded deployment,
 * and 1,200 campaigns, where the oldest is still relayed and settled.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import type { Pool } from '@redpacket/db';
import { keys, poolId } from '@redpacket/lib';
import { deleteKeys, pollUntil, startRedisServer, type TestRedisServer } from '@redpacket/lib/testing';
import { freePort } from '@redpacket/loadgen';
import type { Topology } from '@redpacket/wins';
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
} from '../../gift-svc/test/harness.js';
import { activeOutboxes, fillLiveIndex, liveCampaigns, unsettledCampaigns } from '../src/campaign-index.js';
import { closeCampaign } from '../src/campaigns.js';
import { settleEnded } from '../src/settle-timer.js';

let server: TestRedisServer;
let redis: Redis;
let pool: Pool;
const topologies: Topology[] = [];
const withRows: string[] = [];

beforeAll(async () => {
  server = await startRedisServer(await freePort());
  redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
  pool = await requireMysql(4);
});

afterAll(async () => {
  for (const id of withRows) await dropCampaign(redis, pool, id);
  for (const t of topologies) await dropTopology(t);
  await pool.end();
  redis.disconnect();
  await server.stop();
});

const inIndex = async (id: string): Promise<boolean> => (await redis.zscore(keys.liveCampaigns, id)) !== null;
const open = async (opts: { subPools?: number } = {}): Promise<string> =>
  (await makeCampaign(redis, undefined, { count: 4, totalCents: 400, ...opts })).id;

async function topology(): Promise<Topology> {
  const t = await requireTopology();
  topologies.push(t);
  return t;
}

describe('the live campaign index', () => {
  it('keeps a campaign from its creation until it is settled with every outbox empty', async () => {
    const settled = await open();
    const settledWithEntry = await open({ subPools: 2 });
    const running = await open();
    const deleted = await open();
    for (const id of [settled, settledWithEntry, running, deleted]) expect(await inIndex(id)).toBe(true);
    await deleteKeys(redis, `rp:{${deleted}}:*`);
    for (const id of [settled, settledWithEntry]) await redis.hset(keys.meta(id), 'settled', '1');
    // An entry left in sub-pool 1's outbox after settlement (a relay died before its XACK).
    const entry = await redis.xadd(keys.outbox(poolId(settledWithEntry, 1)), '*', 'c', settledWithEntry, 'p', 'x');

    const active = await activeOutboxes(redis);
    expect(active).toContain(running);
    expect(active).toContain(poolId(settledWithEntry, 1));
    expect(active).not.toContain(settledWithEntry); // pool 0: settled and empty
    expect(active).not.toContain(settled);
    // the relay's pass dropped the settled-and-drained one and the one whose keys are gone
    expect(await inIndex(settled)).toBe(false);
    expect(await inIndex(deleted)).toBe(false);
    expect(await inIndex(settledWithEntry)).toBe(true);
    // the settle timer's view: the settled one is no longer its business, but stays indexed
    expect(await unsettledCampaigns(redis)).toEqual(expect.arrayContaining([running]));
    expect(await unsettledCampaigns(redis)).not.toContain(settledWithEntry);
    expect(await inIndex(settledWithEntry)).toBe(true);

    await redis.xdel(keys.outbox(poolId(settledWithEntry, 1)), entry as string);
    await unsettledCampaigns(redis);
    expect(await inIndex(settledWithEntry)).toBe(false);
    // a second pass over the same state changes nothing
    await activeOutboxes(redis);
    expect(await liveCampaigns(redis)).toEqual([running]);
  });

  it('is filled once from rp:campaigns on a deployment older than it, by several replicas at once', async () => {
    const before = await liveCampaigns(redis);
    const openOne = await open();
    const settledEmpty = await open();
    const settledWithWin = await open();
    const endedUnsettled = await open();
    expect(await grabMany(redis, settledWithWin, 1)).toBe(1);
    for (const id of [settledWithWin, endedUnsettled, settledEmpty]) await closeCampaign(redis, id, 'test');
    for (const id of [settledWithWin, settledEmpty]) await redis.hset(keys.meta(id), 'settled', '1');
    await redis.zadd(keys.campaigns, Date.now(), 'ghost-without-keys');
    // settled by the 1,200-campaign test's pass (it is ended): its rows go afterwards
    withRows.push(endedUnsettled);
    const expected = [...before, openOne, settledWithWin, endedUnsettled];
    // What an older deployment has: rp:campaigns only.
    await redis.del(keys.liveCampaigns, keys.liveCampaignsFilled);

    await Promise.all([fillLiveIndex(redis), fillLiveIndex(redis), fillLiveIndex(redis)]);
    const filled = await liveCampaigns(redis);
    expect(filled.toSorted()).toEqual(expected.toSorted());
    // with the creation time as score, so oldest first as before
    expect(await redis.zscore(keys.liveCampaigns, openOne)).toBe(await redis.zscore(keys.campaigns, openOne));
    expect(await redis.exists(keys.liveCampaignsFilled)).toBe(1);
    // once: a later start does not fill again (what left the index stays out)
    await redis.zrem(keys.liveCampaigns, openOne);
    expect(await fillLiveIndex(redis)).toBe(0);
    expect(await inIndex(openOne)).toBe(false);

    // A relay starting on the old layout fills the index itself, relays the settled campaign's
    // win left in its outbox, and only then drops that campaign.
    await redis.del(keys.liveCampaigns, keys.liveCampaignsFilled);
    const t = await topology();
    const { stop } = await testRelay(t, undefined, {}, server.url);
    try {
      await pollUntil('the relay filled the index', async () => (await redis.exists(keys.liveCampaignsFilled)) === 1);
      await pollUntil('the left-over win relayed', async () => (await queueDepth(t.queue)) === 1);
      await pollUntil('the relayed campaign left the index', async () => !(await inIndex(settledWithWin)));
      expect(await redis.xlen(keys.outbox(settledWithWin))).toBe(0);
      expect((await liveCampaigns(redis)).toSorted()).toEqual(
        expected.filter((id) => id !== settledWithWin).toSorted(),
      );
    } finally {
      await stop();
    }
  });

  it('1,200 campaigns: a win in the oldest is relayed and credited, and the oldest settled', async () => {
    const oldest = await makeCampaign(redis, pool, { count: 2, totalCents: 200 });
    withRows.push(oldest.id);
    await pollUntil('a later millisecond', () => Date.now() > oldest.createdMs);
    const mine = new Set([oldest.id]);
    for (let i = 0; i < 1199; i += 100) {
      const chunk = await Promise.all(
        Array.from({ length: Math.min(100, 1199 - i) }, () =>
          makeCampaign(redis, undefined, { count: 1, totalCents: 1 }),
        ),
      );
      for (const m of chunk) mine.add(m.id);
    }
    // Not among the 1,000 newest: what the relay and the timer used to look at.
    expect(await redis.zrevrank(keys.campaigns, oldest.id)).toBeGreaterThanOrEqual(1000);
    const live = (await liveCampaigns(redis)).filter((id) => mine.has(id));
    expect(live).toHaveLength(1200);
    expect(live[0]).toBe(oldest.id);
    expect(await grabMany(redis, oldest.id, 1)).toBe(1);

    const t = await topology();
    const gift = await testGift(t, pool);
    const { relay, stop } = await testRelay(t, undefined, {}, server.url);
    try {
      const t0 = Date.now();
      await pollUntil('the win credited by gift-svc', async () => (await awardCount(pool, oldest.id)).n === 1, 30_000);
      console.log(`1,200 campaigns: the oldest's win credited ${Date.now() - t0} ms after the relay started`);
      expect(relay.stats.published).toBe(1);
      await pollUntil('its outbox entry acked', async () => (await redis.xlen(keys.outbox(oldest.id))) === 0);
    } finally {
      await stop();
      await gift.stop();
    }

    await closeCampaign(redis, oldest.id, 'test');
    const t1 = Date.now();
    expect(await settleEnded({ redis, pool, log: silent })).toContain(oldest.id);
    console.log(`1,200 campaigns: the settle pass took ${Date.now() - t1} ms`);
    expect(await redis.hget(keys.meta(oldest.id), 'settled')).toBe('1');
    const [rows] = await pool.query('SELECT refund_cents FROM settlements WHERE campaign_id = ?', [oldest.id]);
    const refund = (rows as { refund_cents: string }[])[0]?.refund_cents;
    const won = Number((await redis.hget(keys.stats(oldest.id), 'claimed_cents')) ?? 0);
    expect(Number(refund)).toBe(200 - won);
    // settled with an empty outbox: out of the index; the other 1,199 still in it
    expect(await inIndex(oldest.id)).toBe(false);
    expect(await redis.zcard(keys.liveCampaigns)).toBeGreaterThanOrEqual(1199);
  });
});

import { status } from '@grpc/grpc-js';
import { keys, poolId } from '@redpacket/lib';
import { bearer, call, grpcError } from '@redpacket/lib/testing';
import { Outcome } from '@redpacket/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerScripts, takeScript } from '../src/scripts.js';
import { homePool } from '../src/sub-pools.js';
import { startHarness, type Harness } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

/** A user id of this run whose home is `pool` of `pools`. */
function userAt(pool: number, pools: number, tag: string): string {
  for (let k = 0; ; k++) {
    const id = `${h.run}-${tag}-${k}`;
    if (homePool(id, pools) === pool) return id;
  }
}

const stats = (campaignId: string) => call(h.admin.getCampaignStats, h.admin, { campaignId }, bearer(h.adminToken));

describe('hot campaigns: sub-pools', () => {
  it('rejects a sub-pool count out of range', async () => {
    const over = await grpcError(h.create({ subPools: 65, packetCount: 100 }));
    expect(over.code).toBe(status.INVALID_ARGUMENT);
    expect(over.details).toContain('sub_pools');
    const more = await grpcError(h.create({ subPools: 5, packetCount: 4 }));
    expect(more.code).toBe(status.INVALID_ARGUMENT);
    const neg = await grpcError(h.create({ subPools: -1 }));
    expect(neg.code).toBe(status.INVALID_ARGUMENT);
  });

  it('spreads packets over the pools, each on its own hash tag, and stats sum over them', async () => {
    const c = await h.create({ subPools: 4, packetCount: 10, totalCents: 1000n });
    expect(c.subPools).toBe(4);
    const lens = await Promise.all([0, 1, 2, 3].map((p) => h.redis.llen(keys.batch(poolId(c.campaignId, p), 0))));
    expect(lens).toEqual([3, 3, 2, 2]);
    expect(keys.meta(poolId(c.campaignId, 1))).toBe(`rp:{${c.campaignId}.1}:meta`);
    const s = await stats(c.campaignId);
    expect([s.packetsTotal, s.packetsClaimed, s.packetsRemaining]).toEqual([10, 0, 10]);
  });

  it('writes every packet once over chunked pushes: lists per pool and batch, exact sums, unique ids', async () => {
    // over 5,000 a list (one RPUSH's chunk), 3 batches of uneven size, plain and with 3 pools
    for (const subPools of [1, 3]) {
      const count = 32_003;
      const total = 7_654_321;
      const c = await h.create({
        subPools,
        packetCount: count,
        totalCents: BigInt(total),
        batches: 3,
        batchIntervalMs: 60_000n,
      });
      const ids = new Set<string>();
      let sum = 0;
      for (let b = 0; b < 3; b++) {
        let inBatch = 0;
        for (let p = 0; p < subPools; p++) {
          const items = await h.redis.lrange(keys.batch(poolId(c.campaignId, p), b), 0, -1);
          // packet k of a batch goes to pool k mod S: pool sizes differ by at most one
          const size = [10_668, 10_668, 10_667][b]!;
          expect(items.length).toBe(Math.floor(size / subPools) + (p < size % subPools ? 1 : 0));
          for (const item of items) {
            const [id, cents] = item.split('|');
            expect(id).toMatch(/^[A-Za-z0-9_-]{16}$/);
            ids.add(id!);
            sum += Number(cents);
          }
          inBatch += items.length;
        }
        expect(inBatch).toBe([10_668, 10_668, 10_667][b]);
      }
      expect(ids.size).toBe(count);
      expect(sum).toBe(total);
      const s = await stats(c.campaignId);
      expect([s.packetsTotal, s.packetsRemaining]).toEqual([count, count]);
    }
  });

  it('a dry home pool fails over; retries repeat the win; the claim stays on the home pool', async () => {
    // 2 packets over 2 pools: one each
    const c = await h.create({ subPools: 2, packetCount: 2, totalCents: 200n });
    const first = userAt(0, 2, 'first');
    const second = userAt(0, 2, 'second');
    const third = userAt(0, 2, 'third');
    const a = await h.grabAs(c.campaignId, first, 'a1');
    expect(a.outcome).toBe(Outcome.WON);
    const b = await h.grabAs(c.campaignId, second, 'b1');
    expect(b.outcome).toBe(Outcome.WON);
    expect(b.packetId).not.toBe(a.packetId);
    // the win came from pool 1 and is recorded there; home pool 0 holds the route to it
    expect(await h.redis.hget(keys.claims(poolId(c.campaignId, 1)), second)).toMatch(new RegExp(`^${b.packetId}\\|`));
    expect(await h.redis.hget(keys.route(c.campaignId), second)).toBe(`1|${b.packetId}|${b.amountCents}|b1`);

    const retry = await h.grabAs(c.campaignId, second, 'b1');
    expect([retry.outcome, retry.packetId, retry.amountCents]).toEqual([Outcome.WON, b.packetId, b.amountCents]);
    const again = await h.grabAs(c.campaignId, second, 'b2');
    expect([again.outcome, again.packetId]).toEqual([Outcome.ALREADY_GRABBED, b.packetId]);
    expect((await h.grabAs(c.campaignId, third, 'c1')).outcome).toBe(Outcome.SOLD_OUT);
    // a sold-out failover leaves no reservation behind
    expect(await h.redis.hexists(keys.route(c.campaignId), third)).toBe(0);

    const s = await stats(c.campaignId);
    expect(s).toMatchObject({
      packetsClaimed: 2,
      packetsRemaining: 0,
      amountClaimedCents: 200n,
      wonCount: 2n,
      alreadyGrabbedCount: 2n,
      soldOutCount: 1n,
      outboxPending: 2n,
    });
  });

  it('a reservation left by a crashed failover: its win is found and routed; without one, SOLD_OUT', async () => {
    const c = await h.create({ subPools: 2, packetCount: 2, totalCents: 200n });
    expect((await h.grabAs(c.campaignId, userAt(0, 2, 'drain'))).outcome).toBe(Outcome.WON);
    const old = Date.now() - 60_000;
    // As if a request reserved, took pool 1's packet, and its process died before the route.
    const crashed = userAt(0, 2, 'crashed');
    await h.redis.hset(keys.route(c.campaignId), crashed, `?|dead-req|${old}`);
    registerScripts(h.redis);
    const taken = await takeScript(h.redis, c.campaignId, 1, crashed, 'dead-req');
    expect(taken[0]).toBe(1);
    const r = await h.grabAs(c.campaignId, crashed, 'new-req');
    expect([r.outcome, r.packetId, r.amountCents]).toEqual([Outcome.ALREADY_GRABBED, taken[1], BigInt(taken[2])]);
    expect(await h.redis.hget(keys.route(c.campaignId), crashed)).toBe(`1|${taken[1]}|${taken[2]}|dead-req`);

    // Died before taking anything: no second chance (that could be a second win), SOLD_OUT.
    const ghost = userAt(0, 2, 'ghost');
    await h.redis.hset(keys.route(c.campaignId), ghost, `?|ghost-req|${old}`);
    expect((await h.grabAs(c.campaignId, ghost, 'again')).outcome).toBe(Outcome.SOLD_OUT);
    expect(await h.redis.hget(keys.route(c.campaignId), ghost)).toBe(`?|ghost-req|${old}`);
    expect((await stats(c.campaignId)).soldOutCount).toBe(1n);
  });

  it('closing a campaign ends grabs in every pool', async () => {
    const c = await h.create({ subPools: 4, packetCount: 8 });
    await call(h.admin.closeCampaign, h.admin, { campaignId: c.campaignId, reason: 'test' }, bearer(h.adminToken));
    for (let p = 0; p < 4; p++) {
      expect((await h.grabAs(c.campaignId, userAt(p, 4, `closed${p}`))).outcome).toBe(Outcome.ENDED);
    }
  });
});

/**
 * AdminService.SettleCampaign and ReconcileCampaign over gRPC, against the real Redis, MySQL
 * and RabbitMQ, with the relay and the gift consumer doing the delivery in between.
 */
import { credentials, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { RowDataPacket } from 'mysql2/promise';
import type { Pool } from '@redpacket/db';
import { keys, startServer, type RunningServer } from '@redpacket/lib';
import { bearer, call, grpcError, pollUntil, requireRedis, testSigner } from '@redpacket/lib/testing';
import { AdminServiceClient, Split, type Reconciliation } from '@redpacket/proto';
import { recordDeadLetter, writeAwards } from '@redpacket/gift-svc/awards-writer';
import { audit, balanceOf } from '@redpacket/ledger';
import { depositBudget } from '@redpacket/ledger/testing';
import {
  awardCount,
  dropCampaign,
  dropTopology,
  grabMany,
  makeCampaign,
  requireMysql,
  requireTopology,
  silent,
  testGift,
  testRelay,
  uid,
} from '../../gift-svc/test/harness.js';
import { registerScripts } from '../src/scripts.js';
import { everyoneEligible } from '../src/eligibility-mirror.js';
import { createGrabServer } from '../src/server.js';
import { settleEnded } from '../src/settle-timer.js';

let redis: Redis;
let pool: Pool;
let server: RunningServer;
let admin: InstanceType<typeof AdminServiceClient>;
let adminMd: ReturnType<typeof bearer>;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  redis = await requireRedis();
  registerScripts(redis);
  pool = await requireMysql();
  const tokens = testSigner().verifier();
  server = await startServer({
    services: createGrabServer({ redis, eligibility: everyoneEligible, tokens, log: silent, pool }),
    host: '127.0.0.1',
    port: 0,
    log: silent,
  });
  admin = new AdminServiceClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
  adminMd = bearer(await testSigner().sign({ userId: `admin-${uid()}`, role: 'admin' }));
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  admin.close();
  await server.shutdown(1000);
  await pool.end();
  redis.disconnect();
});

const settle = (campaignId: string) => call(admin.settleCampaign, admin, { campaignId }, adminMd);
const reconcile = (campaignId: string): Promise<Reconciliation> =>
  call(admin.reconcileCampaign, admin, { campaignId }, adminMd);

describe('SettleCampaign and ReconcileCampaign', () => {
  it('settles once, only after every win is credited, and reconciles to the cent', async () => {
    const total = 777_777;
    const owner = `owner-${uid()}`;
    const budget = 1_000_000n;
    await depositBudget(pool, owner, budget);
    const created = await call(
      admin.createCampaign,
      admin,
      {
        name: 'settle test',
        totalCents: BigInt(total),
        packetCount: 500,
        split: Split.RANDOM,
        batches: 1,
        batchIntervalMs: 0n,
        startsAt: undefined,
        expiresAt: new Date(Date.now() + 600_000),
        ownerId: owner,
        eligibility: undefined,
      },
      adminMd,
    );
    const id = created.campaignId;
    expect(await balanceOf(pool, `escrow:${id}`)).toBe(BigInt(total));
    expect(await balanceOf(pool, `operator:${owner}`)).toBe(budget - BigInt(total));
    cleanups.push(() => dropCampaign(redis, pool, id));
    const [row] = await pool.query<RowDataPacket[]>(
      'SELECT total_cents, owner_id FROM campaigns WHERE campaign_id = ?',
      [id],
    );
    expect(row[0]).toEqual({ total_cents: String(total), owner_id: created.ownerId });

    const winner = `w${uid()}-`;
    const won = await grabMany(redis, id, 320, winner);
    expect(won).toBe(320);

    let err = await grpcError(settle(id));
    expect(err.code).toBe(status.FAILED_PRECONDITION);
    expect(err.details).toMatch(/still open/);
    await call(admin.closeCampaign, admin, { campaignId: id, reason: 'done' }, adminMd);
    const [closedRow] = await pool.query<RowDataPacket[]>(
      'SELECT close_reason, closed_at IS NOT NULL AS closed FROM campaigns WHERE campaign_id = ?',
      [id],
    );
    expect(closedRow[0]).toEqual({ close_reason: 'done', closed: 1 });
    err = await grpcError(settle(id));
    expect(err.code).toBe(status.FAILED_PRECONDITION);
    expect(err.details).toMatch(/^320 win\(s\) still in flight/);

    const before = await reconcile(id);
    expect(before.consistent).toBe(false);
    expect(before.missingInMysql).toHaveLength(320);
    expect(before.packetsClaimedRedis + before.packetsRemainingRedis).toBe(500);
    expect(before.amountClaimedRedisCents + before.amountRemainingRedisCents).toBe(BigInt(total));

    // Deliver: relay and gift consumer on a topology of this test's own.
    const t = await requireTopology();
    cleanups.push(() => dropTopology(t));
    const { stop } = await testRelay(t, [id]);
    const gift = await testGift(t, pool);
    try {
      await pollUntil('all credited', async () => (await awardCount(pool, id)).n === 320, 30_000, 50);
    } finally {
      await stop();
      await gift.stop();
    }

    const after = await reconcile(id);
    expect(after.differences).toEqual([]);
    expect(after.consistent).toBe(true);
    const first = await settle(id);
    expect(first.alreadySettled).toBe(false);
    expect(first.packetsAwarded).toBe(320);
    expect(first.amountAwardedCents).toBe(after.amountDeliveredMysqlCents);
    expect(first.amountAwardedCents + first.refundCents).toBe(BigInt(total));
    expect(first.refundCents).toBe(after.amountRemainingRedisCents);
    const second = await settle(id);
    expect(second).toEqual({ ...first, alreadySettled: true });
    const [refunds] = await pool.query<RowDataPacket[]>(
      "SELECT debit_account, credit_account, amount_cents FROM transfers WHERE idempotency_key = ? AND kind = 'refund'",
      [`refund:${id}`],
    );
    expect(refunds).toEqual([
      { debit_account: `escrow:${id}`, credit_account: `operator:${owner}`, amount_cents: String(first.refundCents) },
    ]);
    expect((await reconcile(id)).consistent).toBe(true);
    // The money: escrow empty, the owner paid the awards only, each winner holds their award.
    expect(await balanceOf(pool, `escrow:${id}`)).toBe(0n);
    expect(await balanceOf(pool, `operator:${owner}`)).toBe(budget - BigInt(total) + first.refundCents);
    const [awards] = await pool.query<RowDataPacket[]>(
      'SELECT user_id, amount_cents FROM awards WHERE campaign_id = ?',
      [id],
    );
    expect(awards).toHaveLength(320);
    for (const a of awards) {
      expect(await balanceOf(pool, `user:${a['user_id']}`)).toBe(BigInt(a['amount_cents'] as string));
    }
    expect(await audit(pool)).toMatchObject({ consistent: true, problems: [] });

    // Tampering shows up on the right side, by packet.
    const [some] = await pool.query<RowDataPacket[]>(
      'SELECT packet_id FROM awards WHERE campaign_id = ? ORDER BY packet_id LIMIT 2',
      [id],
    );
    const [gone, changed] = some.map((r) => String(r['packet_id']));
    await pool.query('DELETE FROM awards WHERE packet_id = ?', [gone]);
    await pool.query('UPDATE awards SET amount_cents = amount_cents + 1 WHERE packet_id = ?', [changed]);
    await pool.query(
      "INSERT INTO awards (packet_id, campaign_id, user_id, amount_cents, won_at) VALUES (?, ?, 'intruder', 5, NOW())",
      [`x${uid()}`, id],
    );
    const bad = await reconcile(id);
    expect(bad.consistent).toBe(false);
    expect(bad.missingInMysql).toEqual([gone]);
    expect(bad.mismatched).toEqual([changed]);
    expect(bad.unknownInMysql).toHaveLength(1);
    expect(bad.differences.length).toBeGreaterThanOrEqual(3);
  });

  it('refuses a campaign its owner cannot fund, writing nothing in MySQL or Redis', async () => {
    const owner = `poor-${uid()}`;
    await depositBudget(pool, owner, 999);
    const name = `unfunded ${uid()}`;
    const since = Date.now() - 1000;
    const req = {
      name,
      totalCents: 1000n,
      packetCount: 10,
      split: Split.EQUAL,
      batches: 1,
      batchIntervalMs: 0n,
      startsAt: undefined,
      expiresAt: new Date(Date.now() + 600_000),
      ownerId: owner,
      eligibility: undefined,
    };
    const err = await grpcError(call(admin.createCampaign, admin, req, adminMd));
    expect(err.code).toBe(status.FAILED_PRECONDITION);
    expect(err.details).toMatch(new RegExp(`^owner ${owner} has 999 cents, the campaign needs 1000`));
    expect(await balanceOf(pool, `operator:${owner}`)).toBe(999n);
    const [rows] = await pool.query<RowDataPacket[]>('SELECT campaign_id FROM campaigns WHERE owner_id = ?', [owner]);
    expect(rows).toEqual([]);
    const [moved] = await pool.query<RowDataPacket[]>('SELECT 1 FROM transfers WHERE debit_account = ?', [
      `operator:${owner}`,
    ]);
    expect(moved).toEqual([]);
    // Redis: no campaign created since the call started carries this owner.
    const recent = await redis.zrangebyscore(keys.campaigns, since, '+inf');
    const owners = await Promise.all(recent.map((id) => redis.hget(keys.meta(id), 'owner')));
    expect(owners).not.toContain(owner);

    // With the missing cent deposited the same request goes through and takes all of it.
    await depositBudget(pool, owner, 1);
    const ok = await call(admin.createCampaign, admin, req, adminMd);
    cleanups.push(() => dropCampaign(redis, pool, ok.campaignId));
    expect(await balanceOf(pool, `operator:${owner}`)).toBe(0n);
    expect(await balanceOf(pool, `escrow:${ok.campaignId}`)).toBe(1000n);
    expect(await redis.hget(keys.meta(ok.campaignId), 'owner')).toBe(owner);
  });

  it('refuses bad input and non-admins before touching anything', async () => {
    expect((await grpcError(settle('bad id!'))).code).toBe(status.INVALID_ARGUMENT);
    expect((await grpcError(reconcile(`nope${uid()}`))).code).toBe(status.NOT_FOUND);
    const user = bearer(await testSigner().sign({ userId: `u${uid()}` }));
    const err = await grpcError(call(admin.settleCampaign, admin, { campaignId: 'whatever' }, user));
    expect(err.code).toBe(status.PERMISSION_DENIED);
  });
});

/**
 * Credits a campaign's claims the way gift-svc does, straight from the claims hash, but for the
 * first `skip` of them (returned first all the same: wins that never arrived).
 */
async function creditClaims(id: string, skip = 0): Promise<{ packetId: string; amount: bigint }[]> {
  const claims = await redis.hgetall(keys.claims(id));
  const wins = Object.entries(claims).map(([userId, v]) => {
    const [packetId, amount, requestId, wonAt] = v.split('|');
    return {
      campaignId: id,
      packetId: packetId ?? '',
      userId,
      amountCents: BigInt(amount ?? 0),
      requestId: requestId ?? '',
      wonAtMs: BigInt(wonAt ?? 0),
      streamId: '',
      traceId: '',
    };
  });
  await writeAwards(pool, wins.slice(skip));
  return wins.map((w) => ({ packetId: w.packetId, amount: w.amountCents }));
}

describe('a win parked as a dead letter', () => {
  it('makes settle refuse, naming it and the re-drive command, and reconcile list it apart', async () => {
    const meta = await makeCampaign(redis, pool, { count: 10, totalCents: 1000 });
    const id = meta.id;
    cleanups.push(() => dropCampaign(redis, pool, id));
    expect(await grabMany(redis, id, 4)).toBe(4);
    const [first] = await creditClaims(id, 1);
    const parked = first!;
    await recordDeadLetter(pool, {
      campaignId: id,
      packetId: parked.packetId,
      reason: 'test',
      attempts: 5,
      body: Buffer.from('x'),
    });
    await call(admin.closeCampaign, admin, { campaignId: id, reason: 'done' }, adminMd);

    const err = await grpcError(settle(id));
    expect(err.code).toBe(status.FAILED_PRECONDITION);
    expect(err.details).toContain(`1 win(s) parked as dead letters (packets ${parked.packetId})`);
    expect(err.details).toContain(`redpacket deadletters redrive --campaign ${id}`);
    expect(err.details).not.toMatch(/in flight/);
    expect(await settleEnded({ redis, pool, log: silent, campaigns: async () => [id] })).toEqual([]);

    const rec = await reconcile(id);
    expect(rec).toMatchObject({
      consistent: false,
      deadLettered: [parked.packetId],
      packetsDeadLettered: 1,
      amountDeadLetteredCents: parked.amount,
      missingInMysql: [],
      packetsDeliveredMysql: 3,
    });
    expect(rec.differences).toHaveLength(1);
    expect(rec.differences[0]).toMatch(/redpacket deadletters redrive --campaign/);
    expect((await pool.query<RowDataPacket[]>('SELECT 1 FROM settlements WHERE campaign_id = ?', [id]))[0]).toEqual([]);
  });
});

describe('the settle timer', () => {
  it('settles an expired campaign by itself once its wins are credited, and only then', async () => {
    const meta = await makeCampaign(redis, pool, { count: 50, totalCents: 5000, expiresInMs: 1500 });
    cleanups.push(() => dropCampaign(redis, pool, meta.id));
    expect(await grabMany(redis, meta.id, 20)).toBe(20);
    const o = { redis, pool, log: silent, campaigns: async () => [meta.id] };
    expect(await settleEnded(o)).toEqual([]); // still open
    await pollUntil('expiry', () => Date.now() > meta.expiresMs + 50, 5000);
    expect(await settleEnded(o)).toEqual([]); // expired, but 20 wins in flight
    await creditClaims(meta.id);
    expect(await settleEnded(o)).toEqual([meta.id]);
    expect(await settleEnded(o)).toEqual([]);
    const rec = await reconcile(meta.id);
    expect(rec.consistent).toBe(true);
  });
});

/**
 * Dead letters are re-driven, never silently dropped: a poison win parked by the real pipeline
 * (grab script -> relay -> RabbitMQ -> gift consumer) holds settle back and shows in reconcile's
 * own column until GiftService.RedriveDeadLetters credits it, exactly once; then the campaign
 * settles to the cent. Against the real Redis, RabbitMQ and MySQL.
 */
import { credentials, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { RowDataPacket } from 'mysql2/promise';
import type { Pool } from '@redpacket/db';
import { keys, ServiceError, startServer, type RunningServer } from '@redpacket/lib';
import { bearer, call, grpcError, pollUntil, requireRedis, testSigner } from '@redpacket/lib/testing';
import { GiftServiceClient, type ListDeadLettersRequest } from '@redpacket/proto';
import { encodeWin, type WinEvent } from '@redpacket/wins';
import { closeCampaign } from '@redpacket/grab-svc/campaigns';
import { reconcileCampaign, settleCampaign } from '@redpacket/grab-svc/settle';
import { settleEnded } from '@redpacket/grab-svc/settle-timer';
import { awardKey, recordDeadLetter, writeAwards } from '../src/awards-writer.js';
import { createGiftServer } from '../src/server.js';
import {
  awardCount,
  dropCampaign,
  dropTopology,
  fundEscrows,
  grabMany,
  makeCampaign,
  queueDepth,
  requireMysql,
  requireTopology,
  silent,
  testGift,
  testRelay,
  uid,
} from './harness.js';

let redis: Redis;
let pool: Pool;
let server: RunningServer;
let client: InstanceType<typeof GiftServiceClient>;
let adminMd: ReturnType<typeof bearer>;
/** While set, the server's re-drive writer refuses every win (a write failing again). */
let refuseRedrive = false;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  redis = await requireRedis();
  pool = await requireMysql();
  server = await startServer({
    services: createGiftServer({
      pool,
      redis,
      tokens: testSigner().verifier(),
      log: silent,
      write: (p, wins) => (refuseRedrive ? Promise.reject(new Error('still refused')) : writeAwards(p, wins)),
    }),
    host: '127.0.0.1',
    port: 0,
    log: silent,
  });
  client = new GiftServiceClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
  adminMd = bearer(await testSigner().sign({ userId: `op-${uid()}`, role: 'admin' }));
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  client.close();
  await server.shutdown(1000);
  await pool.end();
  redis.disconnect();
});

const list = (campaignId: string, extra: Partial<ListDeadLettersRequest> = {}) =>
  call(
    client.listDeadLetters,
    client,
    { campaignId, pageSize: 0, pageToken: '', includeRedriven: false, ...extra },
    adminMd,
  );
const redrive = (campaignId: string, deadLetterIds: string[] = []) =>
  call(client.redriveDeadLetters, client, { campaignId, deadLetterIds }, adminMd);

describe('dead letters', () => {
  it('a poison win holds settle back until a re-drive credits it, once; then settles to the cent', async () => {
    const total = 10_000;
    const t = await requireTopology();
    const meta = await makeCampaign(redis, pool, { count: 20, totalCents: total });
    const id = meta.id;
    cleanups.push(
      () => dropTopology(t),
      () => dropCampaign(redis, pool, id),
    );
    expect(await grabMany(redis, id, 12)).toBe(12);
    const [bad, claim] = Object.entries(await redis.hgetall(keys.claims(id))).map(([user, v]) => {
      const [packetId, amount, requestId] = v.split('|');
      return [packetId ?? '', { user, amount: BigInt(amount ?? 0), requestId: requestId ?? '' }] as const;
    })[3]!;

    // The real writer, refusing one packet the way a constraint would, until it is dead-lettered.
    const { stop } = await testRelay(t, [id]);
    const gift = await testGift(t, pool, {
      maxAttempts: 2,
      write: (p, wins) =>
        wins.some((w) => w.packetId === bad)
          ? Promise.reject(new Error('CHECK constraint failed'))
          : writeAwards(p, wins),
    });
    try {
      await pollUntil('the others credited', async () => (await awardCount(pool, id)).n === 11, 30_000, 50);
      await pollUntil('the poison one parked', async () => (await list(id)).parkedCount === 1n, 10_000, 50);
    } finally {
      await stop();
      await gift.stop();
    }
    expect(gift.stats).toMatchObject({ deadLettered: 1, credited: 11 });
    expect(await queueDepth(t.deadQueue)).toBe(1);

    const parked = await list(id);
    expect(parked.deadLetters).toHaveLength(1);
    const dl = parked.deadLetters[0]!;
    expect(dl).toMatchObject({
      campaignId: id,
      packetId: bad,
      userId: claim.user,
      amountCents: claim.amount,
      requestId: claim.requestId,
      attempts: 2,
      redrivenAt: undefined,
    });
    expect(dl.reason).toMatch(/CHECK constraint failed/);
    expect(dl.deadLetteredAt).toBeInstanceOf(Date);
    const stats = await call(client.getDeliveryStats, client, { campaignId: id }, adminMd);
    expect(stats).toMatchObject({ delivered: 11n, deadLettered: 1n, inFlight: 0n });

    // Settle refuses and names it, before (and instead of) any "in flight" count.
    await closeCampaign(redis, id, 'test over');
    const refused = await settleCampaign(redis, pool, id).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ServiceError);
    expect((refused as ServiceError).code).toBe(status.FAILED_PRECONDITION);
    expect((refused as ServiceError).message).toBe(
      `1 win(s) parked as dead letters (packets ${bad}); credit them with ` +
        `\`redpacket deadletters redrive --campaign ${id}\`, then settle again`,
    );
    expect(await settleEnded({ redis, pool, log: silent, campaigns: async () => [id] })).toEqual([]);

    // Reconcile: its own column, not "missing"; inconsistent while parked.
    const rec = await reconcileCampaign(redis, pool, id);
    expect(rec).toMatchObject({
      consistent: false,
      deadLettered: [bad],
      packetsDeadLettered: 1,
      amountDeadLetteredCents: claim.amount,
      missingInMysql: [],
      packetsDeliveredMysql: 11,
    });
    expect(rec.differences).toEqual([
      `1 dead letter(s) parked (1 claimed packet(s), ${claim.amount} cents, not in MySQL): credit them with ` +
        `\`redpacket deadletters redrive --campaign ${id}\``,
    ]);

    // A write failing again: stays parked, reported with its reason.
    refuseRedrive = true;
    try {
      const again = await redrive(id);
      expect(again).toMatchObject({ redriven: 0n, credited: 0n, failed: 1n });
      expect(again.errors).toEqual([
        `dead letter ${dl.deadLetterId} (packet ${bad}): write failed again (still refused); it stays parked`,
      ]);
    } finally {
      refuseRedrive = false;
    }
    expect((await list(id)).parkedCount).toBe(1n);

    const done = await redrive(id);
    expect(done).toEqual({ redriven: 1n, credited: 1n, failed: 0n, errors: [] });
    expect(await redrive(id)).toEqual({ redriven: 0n, credited: 0n, failed: 0n, errors: [] });
    expect(await redrive(id, [dl.deadLetterId])).toEqual({
      redriven: 0n,
      credited: 0n,
      failed: 0n,
      errors: [`dead letter ${dl.deadLetterId}: already re-driven; nothing to do`],
    });
    expect(await awardCount(pool, id)).toEqual({ n: 12, distinct: 12 });
    const [paid] = await pool.query<RowDataPacket[]>(
      "SELECT debit_account, credit_account, amount_cents FROM transfers WHERE kind = 'award' AND idempotency_key = ?",
      [awardKey(id, bad)],
    );
    expect(paid).toEqual([
      { debit_account: `escrow:${id}`, credit_account: `user:${claim.user}`, amount_cents: String(claim.amount) },
    ]);
    expect(await list(id)).toEqual({ deadLetters: [], nextPageToken: '', parkedCount: 0n });
    const history = await list(id, { includeRedriven: true });
    expect(history.deadLetters.map((d) => d.deadLetterId)).toEqual([dl.deadLetterId]);
    expect(history.deadLetters[0]?.redrivenAt).toBeInstanceOf(Date);
    // The broker's copy is left where it is (the MySQL row is the record of truth).
    expect(await queueDepth(t.deadQueue)).toBe(1);

    const after = await reconcileCampaign(redis, pool, id);
    expect(after.differences).toEqual([]);
    expect(after).toMatchObject({
      consistent: true,
      deadLettered: [],
      packetsDeadLettered: 0,
      packetsDeliveredMysql: 12,
    });
    const s = await settleCampaign(redis, pool, id);
    expect(s.packetsAwarded).toBe(12);
    expect(s.amountAwardedCents).toBe(after.amountClaimedRedisCents);
    expect(s.amountAwardedCents + s.refundCents).toBe(BigInt(total));
  });

  it('keeps an undecodable body parked, decodes rows recorded before the new columns, pages', async () => {
    const c = `dl${uid()}`;
    cleanups.push(() => pool.query('DELETE FROM dead_letters WHERE campaign_id = ?', [c]));
    cleanups.push(() => pool.query('DELETE FROM awards WHERE campaign_id = ?', [c]));
    cleanups.push(() => pool.query('DELETE FROM ledger WHERE campaign_id = ?', [c]));
    await recordDeadLetter(pool, {
      campaignId: c,
      packetId: `${c}x`,
      reason: 'not a WinEvent',
      attempts: 1,
      body: Buffer.from('\xff\xff\xff not protobuf'),
    });
    const win: WinEvent = {
      campaignId: c,
      packetId: `${c}old`,
      userId: 'carol',
      amountCents: 42n,
      requestId: 'r-old',
      wonAtMs: BigInt(Date.now()),
      streamId: '',
      traceId: 'trace-old',
    };
    await fundEscrows(pool, [win]);
    // As gift-svc wrote it before migration 0203: only the old columns.
    await pool.query(
      "INSERT INTO dead_letters (campaign_id, packet_id, reason, attempts, body) VALUES (?, ?, 'old', 5, ?)",
      [c, win.packetId, encodeWin(win)],
    );
    const first = await list(c, { pageSize: 1 });
    expect(first.parkedCount).toBe(2n);
    expect(first.deadLetters.map((d) => d.packetId)).toEqual([`${c}x`]);
    expect(first.deadLetters[0]?.userId).toBe('');
    const second = await list(c, { pageSize: 1, pageToken: first.nextPageToken });
    expect(second.nextPageToken).toBe('');
    expect(second.deadLetters[0]).toMatchObject({
      packetId: win.packetId,
      userId: 'carol',
      amountCents: 42n,
      requestId: 'r-old',
      traceId: 'trace-old',
    });

    const res = await redrive(c);
    expect(res).toMatchObject({ redriven: 1n, credited: 1n, failed: 1n });
    expect(res.errors).toHaveLength(1);
    expect(res.errors[0]).toMatch(
      new RegExp(
        `^dead letter ${first.deadLetters[0]?.deadLetterId} \\(packet ${c}x\\): cannot be decoded .*stays parked$`,
      ),
    );
    const left = await list(c);
    expect(left.parkedCount).toBe(1n);
    expect(left.deadLetters.map((d) => d.packetId)).toEqual([`${c}x`]);
    expect(await awardCount(pool, c)).toEqual({ n: 1, distinct: 1 });
  });

  it('refuses bad input and non-admins, and reports unknown ids without failing', async () => {
    const bad = await grpcError(list('no such id!'));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect(bad.details).toMatch(/^campaign_id: /);
    expect((await grpcError(redrive('no such id!'))).code).toBe(status.INVALID_ARGUMENT);
    const ids = await grpcError(redrive('', ['12', 'abc']));
    expect(ids.code).toBe(status.INVALID_ARGUMENT);
    expect(ids.details).toMatch(/^dead_letter_ids: "abc"/);
    expect((await grpcError(list('x', { pageSize: 501 }))).code).toBe(status.INVALID_ARGUMENT);

    const user = bearer(await testSigner().sign({ userId: `u${uid()}` }));
    const req = { campaignId: '', pageSize: 0, pageToken: '', includeRedriven: false };
    expect((await grpcError(call(client.listDeadLetters, client, req, user))).code).toBe(status.PERMISSION_DENIED);
    const denied = await grpcError(
      call(client.redriveDeadLetters, client, { campaignId: '', deadLetterIds: [] }, user),
    );
    expect(denied.code).toBe(status.PERMISSION_DENIED);

    const c = `dl${uid()}`;
    expect(await redrive(c, ['999999999999999999'])).toEqual({
      redriven: 0n,
      credited: 0n,
      failed: 0n,
      errors: [`dead letter 999999999999999999: not found in campaign ${c}`],
    });
  });
});

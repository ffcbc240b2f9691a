/**
 * Red packets users send (GrabService.SendPacket) and codes redeemed at merchants
 * (GiftService.RedeemPacket), over gRPC against real servers: grab-svc and gift-svc in this
 * process, the relay and the gift consumer on RabbitMQ, MySQL in a database of this file's own
 * (so the audit sees only its rows) and Redis in a db of its own (so "nothing written" can count
 * every key).
 */
import { randomBytes } from 'node:crypto';
import { credentials, Metadata, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { RowDataPacket } from 'mysql2/promise';
import { setSwitch, startServer, Switches, type RunningServer } from '@redpacket/lib';
import { bearer, call, grpcError, pollUntil, requireRedis, testRedisDb, testSigner } from '@redpacket/lib/testing';
import { accountId, audit, balanceOf, EXTERNAL, transfer } from '@redpacket/ledger';
import { privateDatabase, type PrivateDatabase } from '@redpacket/ledger/testing';
import {
  GiftServiceClient,
  GrabServiceClient,
  Outcome,
  Split,
  type Campaign,
  type RedeemPacketRequest,
  type RedeemPacketResponse,
  type SendPacketRequest,
} from '@redpacket/proto';
import type { Topology } from '@redpacket/wins';
import { everyoneEligible } from '@redpacket/grab-svc/eligibility-mirror';
import { registerScripts } from '@redpacket/grab-svc/scripts';
import { createGrabServer } from '@redpacket/grab-svc/server';
import { settleEnded } from '@redpacket/grab-svc/settle-timer';
import { recordDeadLetter } from '../src/awards-writer.js';
import type { GiftConsumer } from '../src/consumer.js';
import { createGiftServer } from '../src/server.js';
import { dropTopology, requireTopology, silent, testGift, testRelay, uid } from './harness.js';

const REDIS_DB = testRedisDb(15);
const LIMITS = { maxPackets: 50, maxTotalCents: 100_000, maxPerDay: 3 };

let db: PrivateDatabase;
let redis: Redis;
let switches: Switches;
let grabServer: RunningServer;
let giftServer: RunningServer;
let grabClient: GrabServiceClient;
let giftClient: GiftServiceClient;
let topology: Topology;
let gift: GiftConsumer;
let stopRelay: () => Promise<void>;
const relayed: string[] = [];

beforeAll(async () => {
  db = await privateDatabase(12);
  redis = await requireRedis(REDIS_DB);
  registerScripts(redis);
  await setSwitch(redis, 'spending.paused', false);
  switches = new Switches(redis, silent, { refreshMs: 200 });
  await switches.start();
  const tokens = testSigner().verifier();
  grabServer = await startServer({
    services: createGrabServer({
      redis,
      eligibility: everyoneEligible,
      tokens,
      log: silent,
      pool: db.pool,
      sendLimits: LIMITS,
      onCampaignCreated: (id) => relayed.push(id),
    }),
    host: '127.0.0.1',
    port: 0,
    log: silent,
  });
  giftServer = await startServer({
    services: createGiftServer({ pool: db.pool, redis, tokens, log: silent, switches }),
    host: '127.0.0.1',
    port: 0,
    log: silent,
  });
  grabClient = new GrabServiceClient(`127.0.0.1:${grabServer.port}`, credentials.createInsecure());
  giftClient = new GiftServiceClient(`127.0.0.1:${giftServer.port}`, credentials.createInsecure());
  topology = await requireTopology();
  stopRelay = (await testRelay(topology, undefined, { campaigns: async () => relayed }, REDIS_DB)).stop;
  gift = await testGift(topology, db.pool);
});

afterAll(async () => {
  await stopRelay?.();
  await gift?.stop();
  if (topology) await dropTopology(topology);
  grabClient?.close();
  giftClient?.close();
  await grabServer?.shutdown(1000);
  await giftServer?.shutdown(1000);
  switches?.stop();
  if (redis) {
    await setSwitch(redis, 'spending.paused', false);
    // This file's own Redis db: everything in it is this file's.
    await redis.flushdb();
    redis.disconnect();
  }
  await db?.drop();
});

const md = async (userId: string, role?: 'merchant' | 'admin'): Promise<Metadata> =>
  bearer(await testSigner().sign({ userId, role }));

const send = async (userId: string, over: Partial<SendPacketRequest> = {}): Promise<Campaign> =>
  call(
    grabClient.sendPacket,
    grabClient,
    {
      totalCents: 1000n,
      packetCount: 5,
      split: Split.RANDOM,
      expiresInSeconds: 0n,
      greeting: 'Happy new year',
      requestId: `send-${uid()}`,
      ...over,
    },
    await md(userId),
  );

const redeem = async (merchantId: string, req: Partial<RedeemPacketRequest>): Promise<RedeemPacketResponse> =>
  call(
    giftClient.redeemPacket,
    giftClient,
    { packetId: '', requestId: `redeem-${uid()}`, ...req },
    await md(merchantId, 'merchant'),
  );

const fund = (userId: string, cents: bigint) =>
  transfer(db.pool, {
    key: `test-deposit:${uid()}`,
    kind: 'deposit',
    from: EXTERNAL,
    to: accountId.user(userId),
    amountCents: cents,
  });

const balance = (account: string): Promise<bigint> => balanceOf(db.pool, account);

async function count(sql: string, args: unknown[] = []): Promise<number> {
  const [rows] = await db.pool.query<RowDataPacket[]>(sql, args);
  return Number(rows[0]?.['n'] ?? 0);
}

/** `users` grab the campaign over gRPC; returns the winners' packets. */
async function grabAll(campaignId: string, users: string[]): Promise<Map<string, { packetId: string; cents: bigint }>> {
  const won = new Map<string, { packetId: string; cents: bigint }>();
  for (const u of users) {
    const r = await call(grabClient.grab, grabClient, { campaignId, requestId: `g-${u}` }, await md(u));
    if (r.outcome === Outcome.WON) won.set(u, { packetId: r.packetId, cents: r.amountCents });
  }
  return won;
}

const awardsOf = (campaignId: string): Promise<number> =>
  count('SELECT COUNT(*) AS n FROM awards WHERE campaign_id = ?', [campaignId]);

describe('SendPacket', () => {
  it('without the funds answers FAILED_PRECONDITION and writes nothing, in MySQL or Redis', async () => {
    const sender = `poor-${uid()}`;
    await fund(sender, 999n);
    const keysBefore = await redis.dbsize();
    const transfersBefore = await count('SELECT COUNT(*) AS n FROM transfers');
    const err = await grpcError(send(sender, { totalCents: 1000n }));
    expect(err.code).toBe(status.FAILED_PRECONDITION);
    expect(err.details).toMatch(/insufficient funds: user:poor-\w+ holds 999 cents, the packets need 1000/);
    expect(await count('SELECT COUNT(*) AS n FROM campaigns WHERE owner_id = ?', [sender])).toBe(0);
    expect(await count('SELECT COUNT(*) AS n FROM transfers')).toBe(transfersBefore);
    expect(await redis.dbsize()).toBe(keysBefore);
    expect(await balance(accountId.user(sender))).toBe(999n);
  });

  it('is grabbed by others, expires and settles: the sender gets back what nobody grabbed, and the books balance', async () => {
    const sender = `alice-${uid()}`;
    await fund(sender, 10_000n);
    const requestId = `new-year-${uid()}`;
    const c = await send(sender, { totalCents: 1000n, packetCount: 5, expiresInSeconds: 3n, requestId });
    expect(c.ownerId).toBe(sender);
    expect(c.name).toBe('Happy new year');
    expect(c.batches).toBe(1);
    expect(c.expiresAt!.getTime() - c.startsAt!.getTime()).toBe(3000);
    // A repeated send answers the first campaign and moves nothing again.
    const again = await send(sender, { totalCents: 1000n, packetCount: 5, expiresInSeconds: 3n, requestId });
    expect(again.campaignId).toBe(c.campaignId);
    expect(await balance(accountId.user(sender))).toBe(9000n);
    expect(await balance(accountId.escrow(c.campaignId))).toBe(1000n);
    // Reached by its id only: not listed to everybody.
    const open = await call(grabClient.listOpenCampaigns, grabClient, { pageSize: 100, pageToken: '' }, await md('x'));
    expect(open.campaigns.map((o) => o.campaignId)).not.toContain(c.campaignId);

    const friends = [`bob-${uid()}`, `carol-${uid()}`, `dave-${uid()}`];
    const won = await grabAll(c.campaignId, friends);
    expect(won.size).toBe(3);
    await pollUntil('the three wins credited', async () => (await awardsOf(c.campaignId)) === 3, 10_000);
    const awarded = [...won.values()].reduce((s, w) => s + w.cents, 0n);
    const settled = await pollUntil(
      'the settle timer to settle the expired packet',
      async () =>
        (await settleEnded({ redis, pool: db.pool, log: silent, campaigns: async () => [c.campaignId] })).includes(
          c.campaignId,
        ),
      10_000,
      200,
    );
    expect(settled).toBe(true);
    const refund = 1000n - awarded;
    expect(await balance(accountId.user(sender))).toBe(10_000n - 1000n + refund);
    expect(await balance(accountId.escrow(c.campaignId))).toBe(0n);
    for (const [u, w] of won) expect(await balance(accountId.user(u))).toBe(w.cents);
    expect(await count("SELECT COUNT(*) AS n FROM transfers WHERE kind = 'funding'")).toBeGreaterThan(0);
    const report = await audit(db.pool);
    expect(report.problems).toEqual([]);
    expect(report.consistent).toBe(true);
  });

  it('refuses over the per-user limits, and counts the packets a day under concurrency', async () => {
    const sender = `limits-${uid()}`;
    await fund(sender, 1_000_000n);
    const over = await grpcError(send(sender, { packetCount: 51, totalCents: 1000n }));
    expect(over.code).toBe(status.FAILED_PRECONDITION);
    expect(over.details).toMatch(/packet_count 51 is over the limit of 50/);
    const rich = await grpcError(send(sender, { totalCents: 100_001n }));
    expect(rich.code).toBe(status.FAILED_PRECONDITION);
    expect(rich.details).toMatch(/total_cents 100001 is over the limit of 100000/);
    // Six sends at once, the limit is three a day: exactly three are funded.
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => send(sender, { totalCents: 100n })));
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    const refused = results.filter(
      (r) => r.status === 'rejected' && (r.reason as { code?: number }).code === status.RESOURCE_EXHAUSTED,
    ).length;
    expect([ok, refused]).toEqual([3, 3]);
    expect(await balance(accountId.user(sender))).toBe(1_000_000n - 300n);
    expect(await count('SELECT COUNT(*) AS n FROM campaigns WHERE owner_id = ?', [sender])).toBe(3);
  });

  it('refuses bad input with INVALID_ARGUMENT naming the field', async () => {
    const sender = `bad-${uid()}`;
    await fund(sender, 10_000n);
    const cases: [Partial<SendPacketRequest>, string][] = [
      [{ requestId: '' }, 'request_id'],
      [{ totalCents: 0n }, 'total_cents'],
      [{ totalCents: -5n }, 'total_cents'],
      [{ packetCount: 0 }, 'packet_count'],
      [{ packetCount: 20, totalCents: 10n }, 'packet_count'],
      [{ split: Split.SPLIT_UNSPECIFIED }, 'split'],
      [{ expiresInSeconds: -1n }, 'expires_in_seconds'],
      [{ expiresInSeconds: 8n * 24n * 3600n }, 'expires_in_seconds'],
      [{ greeting: 'x'.repeat(129) }, 'greeting'],
    ];
    for (const [bad, field] of cases) {
      const err = await grpcError(send(sender, bad));
      expect(err.code, field).toBe(status.INVALID_ARGUMENT);
      expect(err.details, field).toContain(field);
    }
    expect(await balance(accountId.user(sender))).toBe(10_000n);
    expect(await count('SELECT COUNT(*) AS n FROM campaigns WHERE owner_id = ?', [sender])).toBe(0);
  });
});

describe('RedeemPacket', () => {
  /** A sent packet of one packet grabbed, its win credited: the winner and the packet. */
  async function credited(): Promise<[string, { packetId: string; cents: bigint }]> {
    const won = await creditedMany(1);
    const [first] = [...won];
    return first!;
  }

  /** A sent packet grabbed by `n` users, every win credited; returns the winners' packets. */
  async function creditedMany(n: number): Promise<Map<string, { packetId: string; cents: bigint }>> {
    const sender = `shop-${uid()}`;
    await fund(sender, 10_000n);
    const c = await send(sender, { totalCents: 1000n, packetCount: n, split: Split.EQUAL });
    const won = await grabAll(
      c.campaignId,
      Array.from({ length: n }, (_, i) => `w${i}-${uid()}`),
    );
    await pollUntil('the wins credited', async () => (await awardsOf(c.campaignId)) === n, 10_000);
    return won;
  }

  it('50 merchants redeem one code at once: exactly one is paid, the others are told already_redeemed', async () => {
    const [winner, w] = await credited();
    const merchants = Array.from({ length: 50 }, (_, i) => `m${i}-${uid()}`);
    const answers = await Promise.all(merchants.map((m) => redeem(m, { packetId: w.packetId })));
    const paid = answers.filter((a) => !a.alreadyRedeemed);
    expect(paid).toHaveLength(1);
    const first = paid[0]!;
    for (const a of answers) {
      expect(a).toMatchObject({ packetId: w.packetId, userId: winner, amountCents: w.cents });
      expect(a.merchantId).toBe(first.merchantId);
      expect(a.redeemedAt).toEqual(first.redeemedAt);
    }
    expect(await balance(accountId.user(winner))).toBe(0n);
    expect(await balance(accountId.merchant(first.merchantId))).toBe(w.cents);
    for (const m of merchants) if (m !== first.merchantId) expect(await balance(accountId.merchant(m))).toBe(0n);
    expect(
      await count("SELECT COUNT(*) AS n FROM transfers WHERE kind = 'redemption' AND note = ?", [
        `packet ${w.packetId}`,
      ]),
    ).toBe(1);
    // Once more, later, even by the merchant paid (another request): already redeemed, nothing moves.
    const late = await redeem(first.merchantId, { packetId: w.packetId });
    expect(late.alreadyRedeemed).toBe(true);
    expect(await balance(accountId.merchant(first.merchantId))).toBe(w.cents);
    expect((await audit(db.pool)).problems).toEqual([]);
  });

  it("the same merchant's retry with the same request_id answers the first redemption", async () => {
    const [, w] = await credited();
    const merchant = `retry-${uid()}`;
    const first = await redeem(merchant, { packetId: w.packetId, requestId: 'r-1' });
    const retry = await redeem(merchant, { packetId: w.packetId, requestId: 'r-1' });
    expect(first.alreadyRedeemed).toBe(false);
    expect(retry).toEqual(first);
    expect((await redeem(merchant, { packetId: w.packetId, requestId: 'r-2' })).alreadyRedeemed).toBe(true);
    expect(await balance(accountId.merchant(merchant))).toBe(w.cents);
  });

  it('answers NOT_FOUND for unknown and forged codes, FAILED_PRECONDITION for a win not yet credited', async () => {
    const merchant = `strict-${uid()}`;
    const forged = randomBytes(12).toString('base64url');
    for (const packetId of [forged, 'unknown-code']) {
      const err = await grpcError(redeem(merchant, { packetId }));
      expect(err.code, packetId).toBe(status.NOT_FOUND);
    }
    // A win parked as a dead letter: won, but its award (and its credit) is not written yet.
    const parked = randomBytes(12).toString('base64url');
    await recordDeadLetter(db.pool, {
      campaignId: `c-${uid()}`,
      packetId: parked,
      userId: `u-${uid()}`,
      amountCents: 10n,
      reason: 'test',
      attempts: 5,
      body: Buffer.from('{}'),
    });
    const err = await grpcError(redeem(merchant, { packetId: parked }));
    expect(err.code).toBe(status.FAILED_PRECONDITION);
    expect(err.details).toMatch(/won but its win is not yet credited/);
    expect(await count('SELECT COUNT(*) AS n FROM redemptions WHERE merchant_id = ?', [merchant])).toBe(0);
    expect(await balance(accountId.merchant(merchant))).toBe(0n);
  });

  it('refuses bad input naming the field, and a token without the merchant role', async () => {
    const [, w] = await credited();
    for (const [bad, field] of [
      [{ packetId: '' }, 'packet_id'],
      [{ packetId: 'no spaces allowed' }, 'packet_id'],
      [{ packetId: w.packetId, requestId: '' }, 'request_id'],
    ] as const) {
      const err = await grpcError(redeem(`m-${uid()}`, bad));
      expect(err.code, field).toBe(status.INVALID_ARGUMENT);
      expect(err.details, field).toContain(field);
    }
    for (const role of [undefined, 'admin'] as const) {
      const err = await grpcError(
        call(giftClient.redeemPacket, giftClient, { packetId: w.packetId, requestId: 'x' }, await md('u', role)),
      );
      expect(err.code).toBe(status.PERMISSION_DENIED);
    }
    expect(await count('SELECT COUNT(*) AS n FROM redemptions WHERE packet_id = ?', [w.packetId])).toBe(0);
  });

  it('answers UNAVAILABLE within 2 s of spending.paused, moving nothing, and redeems again when off', async () => {
    const [winner, w] = await credited();
    const merchant = `paused-${uid()}`;
    const t0 = Date.now();
    await setSwitch(redis, 'spending.paused', true);
    const err = await pollUntil(
      'RedeemPacket to answer UNAVAILABLE',
      async () => {
        // A code of nobody: it cannot move money while the switch is still on its way.
        const e = await grpcError(redeem(merchant, { packetId: 'nobody-s-code' }));
        return e.code === status.UNAVAILABLE ? e : undefined;
      },
      2000,
      50,
    );
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(err.details).toMatch(/spending is paused .*spending\.paused/);
    const during = await grpcError(redeem(merchant, { packetId: w.packetId, requestId: 'p-1' }));
    expect(during.code).toBe(status.UNAVAILABLE);
    expect(await balance(accountId.user(winner))).toBe(w.cents);
    await setSwitch(redis, 'spending.paused', false);
    const after = await pollUntil(
      'RedeemPacket to serve again',
      async () => redeem(merchant, { packetId: w.packetId, requestId: 'p-1' }).catch(() => undefined),
      2000,
      50,
    );
    expect(after.alreadyRedeemed).toBe(false);
    expect(await balance(accountId.merchant(merchant))).toBe(w.cents);
  });
});

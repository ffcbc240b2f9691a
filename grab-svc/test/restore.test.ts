/**
 * AdminService.RestoreCampaign against the real Redis, MySQL and RabbitMQ: a campaign's Redis
 * state is lost entirely while a crowd grabs and the relay and gift consumer deliver, then it is
 * rebuilt from MySQL. Also the refusals, and UNAVAILABLE for a campaign whose state is gone.
 */
import { credentials, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { depositBudget } from '@redpacket/ledger/testing';
import type { Pool } from '@redpacket/db';
import { keys, poolId, startServer, type RunningServer } from '@redpacket/lib';
import {
  bearer,
  call,
  deleteKeys,
  grpcError,
  pollUntil,
  requireRedis,
  TEST_AMQP_URL,
  testSigner,
} from '@redpacket/lib/testing';
import { AdminServiceClient, GrabServiceClient, Outcome, Split, type GrabResponse } from '@redpacket/proto';
import type { Topology } from '@redpacket/wins';
import {
  awardCount,
  dropCampaign,
  dropTopology,
  requireMysql,
  requireTopology,
  silent,
  testGift,
  testRelay,
  uid,
} from '../../gift-svc/test/harness.js';
import type { GiftConsumer } from '../../gift-svc/src/consumer.js';
import { registerScripts } from '../src/scripts.js';
import { everyoneEligible } from '../src/eligibility-mirror.js';
import { campaignsMissing } from '../src/metrics.js';
import { DEFAULT_RELAY_GROUP } from '../src/relay/outbox-relay.js';
import { winsQueueDepth } from '../src/restore.js';
import { createGrabServer } from '../src/server.js';
import type { RowDataPacket } from 'mysql2/promise';

let redis: Redis;
let pool: Pool;
let server: RunningServer;
let topology: Topology;
let admin: InstanceType<typeof AdminServiceClient>;
let grabClient: InstanceType<typeof GrabServiceClient>;
let adminMd: ReturnType<typeof bearer>;
let relay: { stop: () => Promise<void> } | undefined;
let gift: GiftConsumer | undefined;
const campaigns: string[] = [];

beforeAll(async () => {
  redis = await requireRedis();
  registerScripts(redis);
  pool = await requireMysql();
  topology = await requireTopology();
  const tokens = testSigner().verifier();
  server = await startServer({
    services: createGrabServer({
      redis,
      eligibility: everyoneEligible,
      tokens,
      log: silent,
      pool,
      queueDepth: winsQueueDepth(TEST_AMQP_URL, topology.queue),
    }),
    host: '127.0.0.1',
    port: 0,
    log: silent,
  });
  admin = new AdminServiceClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
  grabClient = new GrabServiceClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
  adminMd = bearer(await testSigner().sign({ userId: `admin-${uid()}`, role: 'admin' }));
});

afterAll(async () => {
  await relay?.stop();
  await gift?.stop();
  for (const id of campaigns) {
    await dropCampaign(redis, pool, id);
    await deleteKeys(redis, `rp:{${id}.*}:*`);
  }
  if (topology) await dropTopology(topology);
  admin.close();
  grabClient.close();
  await server.shutdown(1000);
  await pool.end();
  redis.disconnect();
});

const tokens = new Map<string, string>();
async function grabAs(campaignId: string, user: string): Promise<GrabResponse> {
  let t = tokens.get(user);
  if (!t) tokens.set(user, (t = await testSigner().sign({ userId: user })));
  return call(grabClient.grab, grabClient, { campaignId, requestId: '' }, bearer(t));
}

const restore = (campaignId: string, allowQueued = false) =>
  call(admin.restoreCampaign, admin, { campaignId, allowQueued }, adminMd);

async function create(count: number, totalCents: number, subPools: number): Promise<string> {
  const owner = `owner-${uid()}`;
  await depositBudget(pool, owner, totalCents);
  const c = await call(
    admin.createCampaign,
    admin,
    {
      name: 'restore test',
      totalCents: BigInt(totalCents),
      packetCount: count,
      split: Split.RANDOM,
      batches: 2,
      batchIntervalMs: 1n,
      startsAt: undefined,
      expiresAt: new Date(Date.now() + 600_000),
      ownerId: owner,
      eligibility: { requirePreOpened: false, maxRiskScore: 80, admissionPpm: undefined },
      subPools,
    },
    adminMd,
  );
  campaigns.push(c.campaignId);
  return c.campaignId;
}

/** Every key of the campaign, all pools: what a Redis that lost everything no longer has. */
async function loseRedisState(id: string): Promise<void> {
  await deleteKeys(redis, `rp:{${id}}:*`);
  await deleteKeys(redis, `rp:{${id}.*}:*`);
  await redis.zrem(keys.campaigns, id);
}

async function awardedPackets(id: string): Promise<Map<string, string>> {
  const [rows] = await pool.query<RowDataPacket[]>('SELECT packet_id, user_id FROM awards WHERE campaign_id = ?', [id]);
  return new Map(rows.map((r) => [String(r['user_id']), String(r['packet_id'])]));
}

const missingCount = async (id: string): Promise<number> =>
  (await campaignsMissing.get()).values.find((v) => v.labels.campaign === id)?.value ?? 0;

describe('RestoreCampaign', () => {
  it.each([1, 3])(
    'rebuilds a campaign (%i pool(s)) from MySQL after a total loss: exact lost wins, no packet twice',
    async (subPools) => {
      const count = 300;
      const total = 90_000;
      const id = await create(count, total, subPools);
      const users = (from: number, n: number) => Array.from({ length: n }, (_, i) => `${id}-u${from + i}`);

      // A crowd grabs, all at once.
      const answers = new Map<string, GrabResponse>();
      const first = users(0, 90);
      for (const [i, r] of (await Promise.all(first.map((u) => grabAs(id, u)))).entries()) answers.set(first[i]!, r);
      expect([...answers.values()].every((r) => r.outcome === Outcome.WON)).toBe(true);

      // A relay that reads the oldest entries of each pool and dies: they stay pending for it, and
      // the live relay (claimIdleMs far away) never takes them over, while it delivers the rest.
      const readByDead = new Set<string>();
      for (let p = 0; p < subPools; p++) {
        const stream = keys.outbox(poolId(id, p));
        await redis.xgroup('CREATE', stream, DEFAULT_RELAY_GROUP, '0', 'MKSTREAM').catch(() => undefined);
        const res = (await redis.xreadgroup(
          'GROUP',
          DEFAULT_RELAY_GROUP,
          'dead',
          'COUNT',
          7,
          'STREAMS',
          stream,
          '>',
        )) as [string, [string, string[]][]][] | null;
        for (const [, fields] of res?.[0]?.[1] ?? []) readByDead.add(fields[fields.indexOf('p') + 1]!);
      }
      expect(readByDead.size).toBe(7 * subPools);
      relay = await testRelay(topology, [id], { claimIdleMs: 3_600_000 });
      gift = await testGift(topology, pool);
      const delivered = 90 - readByDead.size;
      await pollUntil('the other wins delivered', async () => (await awardCount(pool, id)).n === delivered, 30_000, 50);
      await pollUntil('the queue drained', async () => (await winsQueueDepth(TEST_AMQP_URL, topology.queue)()) === 0);

      await loseRedisState(id);
      // Gone from Redis, known to MySQL: UNAVAILABLE naming the restore, counted.
      const before = await missingCount(id);
      const gone = await grpcError(grabAs(id, `${id}-late`));
      expect(gone.code).toBe(status.UNAVAILABLE);
      expect(gone.details).toBe(
        `campaign ${id} exists in MySQL but its Redis state is gone; an operator restores it: redpacket campaign restore ${id}`,
      );
      const t = await testSigner().sign({ userId: 'viewer' });
      expect((await grpcError(call(grabClient.getCampaign, grabClient, { campaignId: id }, bearer(t)))).code).toBe(
        status.UNAVAILABLE,
      );
      expect(await missingCount(id)).toBe(before + 2);
      expect((await grpcError(grabAs(`nope${uid()}`, `${id}-late`))).code).toBe(status.NOT_FOUND);

      const report = await restore(id);
      // Exactly the answered WONs that never reached MySQL, none guessed.
      const awards = await awardedPackets(id);
      const undelivered = [...answers.entries()].filter(([u]) => !awards.has(u)).map(([, r]) => r.packetId);
      expect(new Set(report.lostWins.map((l) => l.packetId))).toEqual(new Set(undelivered));
      expect(new Set(undelivered)).toEqual(readByDead);
      const amountOf = new Map([...answers.values()].map((r) => [r.packetId, r.amountCents]));
      for (const l of report.lostWins) expect(l.amountCents).toBe(amountOf.get(l.packetId));
      const lostCents = report.lostWins.reduce((s, l) => s + l.amountCents, 0n);
      expect(report.amountLostCents).toBe(lostCents);
      expect(report.claimsRestored).toBe(delivered);
      expect(report.packetsRemaining).toBe(count - 90);
      expect(report.amountClaimedCents + report.amountRemainingCents + lostCents).toBe(BigInt(total));
      expect(report.notes.join('\n')).toMatch(/restart at 0/);
      expect(report.campaign?.subPools).toBe(subPools);
      expect(report.campaign?.eligibility?.maxRiskScore).toBe(80);

      // Every delivered winner gets their own packet again; nobody wins twice.
      const again = await Promise.all([...awards.keys()].map((u) => grabAs(id, u)));
      for (const [i, u] of [...awards.keys()].entries()) {
        expect(again[i]!.outcome).toBe(Outcome.ALREADY_GRABBED);
        expect(again[i]!.packetId).toBe(awards.get(u));
      }

      // The crowd carries on past the end: exactly the packets put back are won, each once.
      const rest = users(90, 260);
      const later = await Promise.all(rest.map((u) => grabAs(id, u)));
      const wonLater = later.filter((r) => r.outcome === Outcome.WON).map((r) => r.packetId);
      expect(wonLater).toHaveLength(count - 90);
      expect(later.filter((r) => r.outcome !== Outcome.WON).every((r) => r.outcome === Outcome.SOLD_OUT)).toBe(true);
      const everWon = [...[...answers.values()].map((r) => r.packetId), ...wonLater];
      expect(new Set(everWon).size).toBe(everWon.length);

      await pollUntil(
        'the later wins delivered',
        async () => (await awardCount(pool, id)).n === count - 90 + delivered,
      );
      await call(admin.closeCampaign, admin, { campaignId: id, reason: 'done' }, adminMd);
      const r = await call(admin.reconcileCampaign, admin, { campaignId: id }, adminMd);
      expect(r.differences).toEqual([]);
      expect(r.consistent).toBe(true);
      expect(r.packetsLost).toBe(readByDead.size);
      expect(r.amountLostCents).toBe(lostCents);
      expect(r.packetsClaimedRedis + r.packetsRemainingRedis + r.packetsLost).toBe(count);
      expect(r.amountClaimedRedisCents + r.amountRemainingRedisCents + r.amountLostCents).toBe(BigInt(total));
      const s = await call(admin.settleCampaign, admin, { campaignId: id }, adminMd);
      expect(s.amountAwardedCents + s.refundCents).toBe(BigInt(total));
      expect(s.refundCents).toBe(lostCents);

      await relay.stop();
      await gift.stop();
      relay = gift = undefined;
    },
    120_000,
  );

  it('refuses while state exists (changing nothing), unknown and malformed ids, and non-admins', async () => {
    const id = await create(20, 2000, 2);
    expect((await grabAs(id, `${id}-a`)).outcome).toBe(Outcome.WON);
    const snapshot = async () =>
      Promise.all(
        [0, 1].flatMap((p) => [
          redis.hgetall(keys.meta(poolId(id, p))),
          redis.hgetall(keys.stats(poolId(id, p))),
          redis.hgetall(keys.claims(poolId(id, p))),
          redis.lrange(keys.batch(poolId(id, p), 0), 0, -1),
          redis.lrange(keys.batch(poolId(id, p), 1), 0, -1),
        ]),
      );
    const was = await snapshot();
    // Pool 1 alone still there is enough to refuse.
    await redis.del(keys.meta(id));
    const err = await grpcError(restore(id));
    expect(err.code).toBe(status.FAILED_PRECONDITION);
    expect(err.details).toMatch(/still has Redis state .*nothing overwritten/);
    await redis.hset(keys.meta(id), was[0] as Record<string, string>);
    expect(await snapshot()).toEqual(was);

    expect((await grpcError(restore(`nope${uid()}`))).code).toBe(status.NOT_FOUND);
    const bad = await grpcError(restore('bad id!'));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect(bad.details).toMatch(/campaign_id/);
    const user = bearer(await testSigner().sign({ userId: `u${uid()}` }));
    const denied = await grpcError(call(admin.restoreCampaign, admin, { campaignId: id, allowQueued: false }, user));
    expect(denied.code).toBe(status.PERMISSION_DENIED);
  });

  it('waits for the wins queue to drain unless told otherwise', async () => {
    const id = await create(10, 1000, 1);
    expect((await grabAs(id, `${id}-a`)).outcome).toBe(Outcome.WON);
    // Delivered into the queue, with no gift consumer to take it.
    relay = await testRelay(topology, [id]);
    await pollUntil('the win queued', async () => (await winsQueueDepth(TEST_AMQP_URL, topology.queue)()) === 1);
    await relay.stop();
    relay = undefined;
    await loseRedisState(id);
    const err = await grpcError(restore(id));
    expect(err.code).toBe(status.FAILED_PRECONDITION);
    expect(err.details).toMatch(/^1 win\(s\) still queued/);
    expect(await redis.exists(keys.meta(id))).toBe(0);
    const report = await restore(id, true);
    expect(report.winsQueued).toBe(1n);
    expect(report.claimsRestored).toBe(0);
    // Without the queued award the restore cannot know the win: the packet goes back (the notes say so).
    expect(report.packetsRemaining).toBe(10);
    expect(report.notes.join('\n')).toMatch(/still queued in RabbitMQ/);
    gift = await testGift(topology, pool);
    await pollUntil('the queued win delivered', async () => (await awardCount(pool, id)).n === 1);
    await gift.stop();
    gift = undefined;
    const r = await call(admin.reconcileCampaign, admin, { campaignId: id }, adminMd);
    expect(r.consistent).toBe(false);
    expect(r.unknownInMysql).toHaveLength(1);
  });
});

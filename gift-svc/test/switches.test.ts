/**
 * gift.paused and awards.queries_disabled against the real RabbitMQ, MySQL and Redis. The
 * switches are global, so this test keeps them in a Redis database of its own (and its own
 * topology): no other test's consumer or server ever sees them.
 */
import { credentials, status } from '@grpc/grpc-js';
import type { Pool } from '@redpacket/db';
import { setSwitch, startServer, Switches, type RunningServer } from '@redpacket/lib';
import {
  bearer,
  call,
  grpcError,
  pollUntil,
  requireRedis,
  TEST_AMQP_URL,
  testSigner,
  testRedisDb,
} from '@redpacket/lib/testing';
import { GiftServiceClient } from '@redpacket/proto';
import { assertTopology, connectAmqp, encodeWin, type Topology, type WinEvent } from '@redpacket/wins';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGiftServer } from '../src/server.js';
import {
  awardCount,
  dropTopology,
  fundEscrows,
  queueDepth,
  requireMysql,
  requireTopology,
  silent,
  testGift,
  uid,
  writeFundedAwards,
} from './harness.js';

const OWN_DB_URL = testRedisDb(14);

let pool: Pool;
let ownDb: Redis;
const campaigns: string[] = [];

beforeAll(async () => {
  pool = await requireMysql();
  ownDb = await requireRedis(OWN_DB_URL);
});

afterAll(async () => {
  for (const c of campaigns) {
    for (const table of ['awards', 'ledger', 'dead_letters']) {
      await pool?.query(`DELETE FROM ${table} WHERE campaign_id = ?`, [c]);
    }
  }
  await pool?.end();
  ownDb?.disconnect();
});

function wins(campaignId: string, from: number, n: number): WinEvent[] {
  return Array.from({ length: n }, (_, i) => ({
    campaignId,
    packetId: `${campaignId}p${from + i}`,
    userId: `user${from + i}`,
    amountCents: BigInt(1 + ((from + i) % 97)),
    requestId: `req${from + i}`,
    wonAtMs: BigInt(Date.now()),
    streamId: `${from + i}-0`,
    traceId: '',
  }));
}

async function publish(t: Topology, ws: WinEvent[]): Promise<void> {
  await fundEscrows(pool, ws);
  const conn = await connectAmqp(TEST_AMQP_URL, `test-publisher-${t.queue}`);
  try {
    const ch = await conn.createConfirmChannel();
    await assertTopology(ch, t);
    for (const w of ws) ch.publish(t.exchange, 'c', encodeWin(w), { persistent: true });
    await ch.waitForConfirms();
  } finally {
    await conn.close();
  }
}

describe('gift.paused', () => {
  it('while on, wins stay in the queue and none is written; off: all written exactly once, within 2 s', async () => {
    const t = await requireTopology();
    const c = `sw${uid()}`;
    campaigns.push(c);
    const switches = new Switches(ownDb, silent, { refreshMs: 100 });
    let gift: Awaited<ReturnType<typeof testGift>> | undefined;
    try {
      // paused from the start: the consumer connects but never consumes
      await setSwitch(ownDb, 'gift.paused', true);
      await switches.start();
      gift = await testGift(t, pool, { paused: () => switches.isOn('gift.paused'), pauseCheckMs: 100 });
      expect(gift.isPaused).toBe(true);
      await publish(t, wins(c, 0, 300));
      // all 300 ready in the queue, none delivered to (or held unacked by) the consumer
      await pollUntil('300 wins ready in the queue', async () => (await queueDepth(t.queue)) === 300);
      expect(gift.stats.received).toBe(0);
      expect(await awardCount(pool, c)).toEqual({ n: 0, distinct: 0 });

      let t0 = Date.now();
      await setSwitch(ownDb, 'gift.paused', false);
      await pollUntil('the consumer to resume', () => gift!.stats.received > 0, 2000);
      expect(Date.now() - t0).toBeLessThan(2000);
      await pollUntil('300 awards written', async () => (await awardCount(pool, c)).n === 300);

      // paused again while running: the next wins queue up
      t0 = Date.now();
      await setSwitch(ownDb, 'gift.paused', true);
      await pollUntil('the consumer to pause', () => gift!.isPaused, 2000);
      expect(Date.now() - t0).toBeLessThan(2000);
      await publish(t, wins(c, 300, 200));
      await pollUntil('200 more wins ready in the queue', async () => (await queueDepth(t.queue)) === 200);
      expect(gift.stats.received).toBe(300);
      expect(await awardCount(pool, c)).toEqual({ n: 300, distinct: 300 });

      await setSwitch(ownDb, 'gift.paused', false);
      await pollUntil('all 500 awards written', async () => (await awardCount(pool, c)).n === 500);
      await pollUntil('the queue drained', async () => (await queueDepth(t.queue)) === 0);
      expect(await awardCount(pool, c)).toEqual({ n: 500, distinct: 500 });
      expect(gift.stats).toMatchObject({ received: 500, credited: 500, duplicates: 0, deadLettered: 0 });
    } finally {
      await setSwitch(ownDb, 'gift.paused', false);
      switches.stop();
      await gift?.stop();
      await dropTopology(t);
    }
  });
});

describe('awards.queries_disabled', () => {
  it('ListMyAwards and ListCampaignAwards answer UNAVAILABLE saying so, and serve again when off', async () => {
    const c = `sw${uid()}`;
    campaigns.push(c);
    const alice = `alice-${uid()}`;
    await writeFundedAwards(
      pool,
      wins(c, 0, 1).map((w) => ({ ...w, userId: alice })),
    );
    const switches = new Switches(ownDb, silent, { refreshMs: 100 });
    await switches.start();
    let server: RunningServer | undefined;
    let client: GiftServiceClient | undefined;
    try {
      server = await startServer({
        services: createGiftServer({
          pool,
          tokens: testSigner().verifier(),
          log: silent,
          switches,
        }),
        host: '127.0.0.1',
        port: 0,
        log: silent,
      });
      const cl = new GiftServiceClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
      client = cl;
      const me = bearer(await testSigner().sign({ userId: alice }));
      const admin = bearer(await testSigner().sign({ userId: 'ops', role: 'admin' }));
      const mine = () => call(cl.listMyAwards, cl, { pageSize: 0, pageToken: '', campaignId: c }, me);
      const campaign = () => call(cl.listCampaignAwards, cl, { campaignId: c, pageSize: 0, pageToken: '' }, admin);
      expect((await mine()).awards).toHaveLength(1);

      const t0 = Date.now();
      await setSwitch(ownDb, 'awards.queries_disabled', true);
      const err = await pollUntil(
        'ListMyAwards to answer UNAVAILABLE',
        async () => {
          const e = await mine().then(
            () => undefined,
            (e: unknown) => e as { code: number; details: string },
          );
          return e?.code === status.UNAVAILABLE ? e : undefined;
        },
        2000,
      );
      expect(Date.now() - t0).toBeLessThan(2000);
      expect(err.details).toMatch(/award queries are disabled .*awards\.queries_disabled/);
      const err2 = await grpcError(campaign());
      expect(err2.code).toBe(status.UNAVAILABLE);
      expect(err2.details).toMatch(/awards\.queries_disabled/);

      await setSwitch(ownDb, 'awards.queries_disabled', false);
      const back = await pollUntil('ListMyAwards to serve again', () => mine().catch(() => undefined), 2000);
      expect(back.awards).toHaveLength(1);
      expect((await campaign()).awards).toHaveLength(1);
    } finally {
      await setSwitch(ownDb, 'awards.queries_disabled', false);
      switches.stop();
      client?.close();
      await server?.shutdown(2000);
    }
  });
});

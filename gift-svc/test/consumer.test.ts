/**
 * gift-svc's consumer against the real RabbitMQ and MySQL: exactly once through duplicates,
 * poison messages and killed MySQL connections; the throttle; the GiftService queries.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '@redpacket/db';
import { registry } from '@redpacket/lib';
import { metricValue, pollUntil, TEST_AMQP_URL } from '@redpacket/lib/testing';
import { AggregatorRegistry } from 'prom-client';
import { assertTopology, connectAmqp, encodeWin, type Topology, type WinEvent } from '@redpacket/wins';
import type { RowDataPacket } from 'mysql2/promise';
import { accountId, audit } from '@redpacket/ledger';
import { writeAwards } from '../src/awards-writer.js';
import {
  awardCount,
  dropTopology,
  fundEscrows,
  queueDepth,
  requireMysql,
  requireTopology,
  testGift,
  uid,
} from './harness.js';

let pool: Pool;
const topologies: Topology[] = [];
const campaigns: string[] = [];

beforeAll(async () => {
  pool = await requireMysql();
});

afterAll(async () => {
  for (const c of campaigns) {
    for (const table of ['awards', 'ledger', 'dead_letters']) {
      await pool.query(`DELETE FROM ${table} WHERE campaign_id = ?`, [c]);
    }
  }
  for (const t of topologies) await dropTopology(t);
  await pool.end();
});

async function newTopology(): Promise<Topology> {
  const t = await requireTopology();
  topologies.push(t);
  return t;
}

/** `n` wins of a campaign of the test's own, its escrow funded with their sum. */
async function wins(campaignId: string, n: number): Promise<WinEvent[]> {
  campaigns.push(campaignId);
  const ws = Array.from({ length: n }, (_, i) => ({
    campaignId,
    packetId: `${campaignId}p${i}`,
    userId: `user${i}`,
    amountCents: BigInt(1 + (i % 97)),
    requestId: `req${i}`,
    wonAtMs: BigInt(Date.now()),
    streamId: `${i}-0`,
    traceId: '',
  }));
  await fundEscrows(pool, ws);
  return ws;
}

/** Publishes raw bodies to the topology's exchange with confirms. */
async function publish(t: Topology, bodies: Buffer[], routingKey = 'c'): Promise<void> {
  const conn = await connectAmqp(TEST_AMQP_URL, `test-publisher-${t.queue}`);
  try {
    const ch = await conn.createConfirmChannel();
    await assertTopology(ch, t);
    for (const b of bodies) ch.publish(t.exchange, routingKey, b, { persistent: true });
    await ch.waitForConfirms();
  } finally {
    await conn.close();
  }
}

/** The gift counters (redpacket_gift_<name>_total) now, to compare with after a test's traffic. */
async function giftCounters(): Promise<Record<string, number>> {
  const names = ['received', 'delivered', 'duplicates', 'retries', 'dead_lettered'];
  const out: Record<string, number> = {};
  for (const n of names) out[n] = await metricValue(`redpacket_gift_${n}_total`);
  out['writes'] = await metricValue('redpacket_dependency_duration_seconds_count', { op: 'gift_write_awards' });
  return out;
}

async function countersSince(before: Record<string, number>): Promise<Record<string, number>> {
  const now = await giftCounters();
  return Object.fromEntries(Object.entries(now).map(([k, v]) => [k, v - (before[k] ?? 0)]));
}

/** The awards' sum and the award transfers out of the campaign's escrow (sum, count). */
async function sums(campaignId: string): Promise<{ awards: string; ledger: string; ledgerRows: number }> {
  const [[a], [l]] = await Promise.all([
    pool.query<RowDataPacket[]>('SELECT COALESCE(SUM(amount_cents), 0) AS s FROM awards WHERE campaign_id = ?', [
      campaignId,
    ]),
    pool.query<RowDataPacket[]>(
      "SELECT COALESCE(SUM(amount_cents), 0) AS s, COUNT(*) AS n FROM transfers WHERE debit_account = ? AND kind = 'award'",
      [accountId.escrow(campaignId)],
    ),
  ]);
  return { awards: String(a[0]?.['s']), ledger: String(l[0]?.['s']), ledgerRows: Number(l[0]?.['n']) };
}

describe('GiftConsumer', () => {
  it('credits every win exactly once although each is delivered twice', async () => {
    const t = await newTopology();
    const c = `g${uid()}`;
    const ws = await wins(c, 1000);
    const bodies = ws.map(encodeWin);
    await publish(t, [...bodies, ...bodies.slice().reverse()]);
    const before = await giftCounters();
    const gift = await testGift(t, pool, { batchSize: 200 });
    try {
      // Every delivery written (new or duplicate), not merely delivered: stopping drops the
      // deliveries still buffered, and those would be missing from the counts below.
      await pollUntil(
        'all 2000 deliveries written',
        () => gift.stats.credited + gift.stats.duplicates === 2000,
        30_000,
      );
      expect(await queueDepth(t.queue)).toBe(0);
    } finally {
      await gift.stop();
    }
    expect(await awardCount(pool, c)).toEqual({ n: 1000, distinct: 1000 });
    const expected = ws.reduce((s, w) => s + w.amountCents, 0n).toString();
    expect(await sums(c)).toEqual({ awards: expected, ledger: expected, ledgerRows: 1000 });
    expect(gift.stats).toMatchObject({ credited: 1000, duplicates: 1000, deadLettered: 0 });
    const moved = await countersSince(before);
    expect(moved).toMatchObject({ received: 2000, delivered: 1000, duplicates: 1000, retries: 0, dead_lettered: 0 });
    // at most 200 a transaction: 10 at least, each one timed
    expect(moved['writes']).toBeGreaterThanOrEqual(10);
  });

  it('reports the backlog of its queue and the deliveries it holds, read at scrape time', async () => {
    const t = await newTopology();
    const c = `g${uid()}`;
    await publish(t, (await wins(c, 50)).map(encodeWin));
    let paused = true;
    const gift = await testGift(t, pool, { paused: () => paused, pauseCheckMs: 50 });
    try {
      await pollUntil('the backlog gauge to show 50 ready', async () => {
        return (await metricValue('redpacket_gift_backlog_messages', { queue: t.queue })) === 50;
      });
      expect(await metricValue('redpacket_gift_unacked_messages')).toBe(0);
      // WORKERS > 1: the primary sums its workers' metrics, but every worker reads the same queue
      const perWorker = await registry.getMetricsAsJSON();
      const summed = AggregatorRegistry.aggregate([perWorker, perWorker]);
      const backlog = await summed.getSingleMetric('redpacket_gift_backlog_messages')?.get();
      expect(backlog?.values.find((v) => v.labels['queue'] === t.queue)?.value).toBe(50);
      paused = false;
      await pollUntil('all credited', async () => (await awardCount(pool, c)).n === 50, 30_000, 50);
      await pollUntil('the backlog gauge to show 0', async () => {
        return (await metricValue('redpacket_gift_backlog_messages', { queue: t.queue })) === 0;
      });
      await pollUntil('nothing held', async () => (await metricValue('redpacket_gift_unacked_messages')) === 0);
    } finally {
      await gift.stop();
    }
    // a stopped consumer reports no backlog (absent, not stale)
    const r = await metricValue('redpacket_gift_backlog_messages', { queue: t.queue });
    expect(r).toBe(0);
  });

  it('dead-letters poison messages and counts them without holding back the rest', async () => {
    const t = await newTopology();
    const c = `g${uid()}`;
    const ws = await wins(c, 300);
    const garbage = Buffer.from('not a protobuf at all \xff\xff\xff');
    const negative = encodeWin({ ...ws[0]!, packetId: `${c}bad`, amountCents: -5n });
    // Poison first: the good wins queue up behind it.
    await publish(t, [garbage, negative, ...ws.map(encodeWin)]);
    const before = await giftCounters();
    const gift = await testGift(t, pool, { batchSize: 200 });
    try {
      await pollUntil('good wins credited', async () => (await awardCount(pool, c)).n === 300, 30_000, 100);
      await pollUntil(
        'poison in the dead-letter queue',
        async () => (await queueDepth(t.deadQueue)) === 2,
        10_000,
        100,
      );
    } finally {
      await gift.stop();
    }
    expect(gift.stats.deadLettered).toBe(2);
    expect(await countersSince(before)).toMatchObject({ dead_lettered: 2, delivered: 300, retries: 0 });
    const [rows] = await pool.query<RowDataPacket[]>(
      'SELECT packet_id, reason, attempts FROM dead_letters WHERE campaign_id = ?',
      [c],
    );
    expect(rows.map((r) => [r['packet_id'], r['attempts']])).toEqual([[`${c}bad`, 1]]);
    expect(String(rows[0]?.['reason'])).toMatch(/amount_cents/);
    await pool.query("DELETE FROM dead_letters WHERE campaign_id = '' AND body = ?", [garbage]);
  });

  it('requeues a win whose write fails on its own, dead-letters it after maxAttempts, credits the rest', async () => {
    const t = await newTopology();
    const c = `g${uid()}`;
    const ws = await wins(c, 400);
    const bad = ws[7]!.packetId;
    await publish(t, ws.map(encodeWin));
    const before = await giftCounters();
    let calls = 0;
    const gift = await testGift(t, pool, {
      maxAttempts: 3,
      // The real writer, refusing one packet the way a constraint would (not a connection error).
      write: (p, batch) => {
        calls++;
        if (batch.some((w) => w.packetId === bad)) return Promise.reject(new Error('CHECK constraint failed'));
        return writeAwards(p, batch);
      },
    });
    try {
      await pollUntil('the others credited', async () => (await awardCount(pool, c)).n === 399, 30_000, 50);
      await pollUntil('the bad one dead-lettered', async () => (await queueDepth(t.deadQueue)) === 1, 10_000, 50);
    } finally {
      await gift.stop();
    }
    expect(gift.stats).toMatchObject({ deadLettered: 1, retried: 2, credited: 399 });
    expect(await countersSince(before)).toMatchObject({ dead_lettered: 1, retries: 2, delivered: 399 });
    const failedWrites = { dependency: 'mysql', op: 'gift_write_awards' };
    expect(await metricValue('redpacket_dependency_errors_total', failedWrites)).toBeGreaterThanOrEqual(3);
    expect(calls).toBeGreaterThan(3);
    const [rows] = await pool.query<RowDataPacket[]>(
      'SELECT packet_id, attempts FROM dead_letters WHERE campaign_id = ?',
      [c],
    );
    expect(rows).toEqual([{ packet_id: bad, attempts: 3 }]);
    expect(await queueDepth(t.queue)).toBe(0);
  });

  it('survives its MySQL connections being killed mid-transaction', async () => {
    const t = await newTopology();
    const c = `g${uid()}`;
    await publish(t, (await wins(c, 4000)).map(encodeWin));
    // A pool of its own, whose connection ids we know: only those are killed.
    const own = await requireMysql(4);
    const ids = new Set<number>();
    own.on('connection', (conn) => ids.add(conn.threadId));
    const gift = await testGift(t, own, { batchSize: 50 });
    let kills = 0;
    try {
      for (let round = 0; round < 5; round++) {
        await pollUntil('some progress', async () => (await awardCount(pool, c)).n >= (round + 1) * 300, 30_000, 5);
        for (const id of [...ids]) {
          await pool.query('KILL ?', [id]).then(
            () => kills++,
            () => undefined, // already gone
          );
          ids.delete(id);
        }
      }
      await pollUntil('all wins credited', async () => (await awardCount(pool, c)).n === 4000, 60_000, 100);
      await pollUntil('queue drained', async () => (await queueDepth(t.queue)) === 0, 10_000, 100);
    } finally {
      await gift.stop();
      await own.end();
    }
    expect(kills).toBeGreaterThan(0);
    expect(await awardCount(pool, c)).toEqual({ n: 4000, distinct: 4000 });
    const s = await sums(c);
    expect(s.ledger).toBe(s.awards);
    expect(s.ledgerRows).toBe(4000);
    expect(gift.stats.deadLettered).toBe(0);
    expect(await audit(pool)).toMatchObject({ consistent: true, problems: [] });
  });

  it('holds deliveries to GIFT_RATE', async () => {
    const t = await newTopology();
    const c = `g${uid()}`;
    const n = 700;
    const rate = 250;
    await publish(t, (await wins(c, n)).map(encodeWin));
    const started = Date.now();
    const gift = await testGift(t, pool, { rate });
    try {
      await pollUntil('all credited', async () => (await awardCount(pool, c)).n === n, 30_000, 20);
    } finally {
      await gift.stop();
    }
    const seconds = (Date.now() - started) / 1000;
    // Up to one bucket (rate / 10) may go at once at the start; the rest at the rate.
    const expected = (n - rate / 10) / rate;
    expect(seconds).toBeGreaterThan(expected * 0.95);
    expect(seconds).toBeLessThan(expected * 1.25 + 0.5);
  });
});

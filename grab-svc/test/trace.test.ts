/**
 * The edge's x-request-id, end to end against the real servers: a grab through grab-svc's gRPC
 * server -> the grab script's outbox entry -> the real relay -> a RabbitMQ message (WinEvent
 * trace_id and an x-request-id header) -> gift-svc's consumer, whose credit, retry and
 * dead-letter log lines carry it. Outbox entries written before trace ids existed still relay.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { status } from '@grpc/grpc-js';
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import type { Pool } from '@redpacket/db';
import { keys, REQUEST_ID_HEADER } from '@redpacket/lib';
import { bearer, call, callWithTrailers, pollUntil, requireRedis, TEST_AMQP_URL } from '@redpacket/lib/testing';
import { Outcome } from '@redpacket/proto';
import { connectAmqp, decodeWin, TRACE_HEADER, type WinEvent } from '@redpacket/wins';
import {
  dropCampaign,
  dropTopology,
  queueDepth,
  requireMysql,
  requireTopology,
  testGift,
  testRelay,
  writeFundedAwards,
} from '../../gift-svc/test/harness.js';
import { startHarness, type Harness } from './harness.js';

type Line = Record<string, unknown> & { msg: string };

let redis: Redis;
let pool: Pool;
let h: Harness;

beforeAll(async () => {
  redis = await requireRedis();
  pool = await requireMysql(2);
  h = await startHarness();
});

afterAll(async () => {
  await h.close();
  await pool.end();
  redis.disconnect();
});

it("grab-svc's access lines and replies: the grab at debug with its request id and no id in its reply, other calls at info and answering with theirs, never a token", async () => {
  const lines: Line[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Line) });
  const g = await startHarness({ log });
  try {
    const c = await g.create({ packetCount: 2, totalCents: 200n });
    const token = await g.userToken(`${g.run}-logged`);
    const md = bearer(token);
    md.set(REQUEST_ID_HEADER, 'grab-req-1');
    const grab = (m: typeof md) =>
      callWithTrailers(g.grab.grab, g.grab, { campaignId: c.campaignId, requestId: '' }, m);
    // the grab is a hot path: its reply carries no id (through Envoy the caller has Envoy's)
    const won = await grab(md);
    expect(won.response?.outcome).toBe(Outcome.WON);
    expect(won.trailers.get(REQUEST_ID_HEADER)).toEqual([]);
    const forged = bearer(`${token.slice(0, -4)}AAAA`);
    forged.set(REQUEST_ID_HEADER, 'grab-req-2');
    const refused = await grab(forged);
    expect(refused.error?.message).toMatch(/UNAUTHENTICATED/);
    expect(refused.trailers.get(REQUEST_ID_HEADER)).toEqual([]);
    // any other call answers with its id: the one sent, or the one generated (the access line's)
    const asked = bearer(token);
    asked.set(REQUEST_ID_HEADER, 'get-req-3');
    const got = await callWithTrailers(g.grab.getCampaign, g.grab, { campaignId: c.campaignId }, asked);
    expect(got.response?.campaignId).toBe(c.campaignId);
    expect(got.trailers.get(REQUEST_ID_HEADER)).toEqual(['get-req-3']);
    const missing = await callWithTrailers(
      g.grab.getCampaign,
      g.grab,
      { campaignId: 'no-such-campaign' },
      bearer(token),
    );
    expect(missing.error?.code).toBe(status.NOT_FOUND);
    const generated = missing.trailers.get(REQUEST_ID_HEADER)[0];
    expect(generated).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const rpc = lines.filter((l) => l.msg === 'rpc');
    expect(rpc).toEqual([
      expect.objectContaining({ level: 30, method: '/redpacket.v1.AdminService/CreateCampaign', code: 'OK' }),
      expect.objectContaining({
        level: 20,
        method: '/redpacket.v1.GrabService/Grab',
        code: 'OK',
        requestId: 'grab-req-1',
      }),
      expect.objectContaining({
        level: 20,
        method: '/redpacket.v1.GrabService/Grab',
        code: 'UNAUTHENTICATED',
        requestId: 'grab-req-2',
      }),
      expect.objectContaining({
        level: 30,
        method: '/redpacket.v1.GrabService/GetCampaign',
        code: 'OK',
        requestId: 'get-req-3',
      }),
      expect.objectContaining({
        level: 30,
        method: '/redpacket.v1.GrabService/GetCampaign',
        code: 'NOT_FOUND',
        requestId: generated,
      }),
    ]);
    const all = JSON.stringify(lines);
    expect(all).not.toContain(token.split('.')[2]);
    expect(all).not.toContain(g.adminToken.split('.')[2]);
  } finally {
    await g.close();
  }
});

it('x-request-id travels from the grab call through the outbox, the relay and RabbitMQ into gift-svc logs', async () => {
  const t = await requireTopology();
  const c = await h.create({ packetCount: 10, totalCents: 1000n });
  const id = c.campaignId;
  try {
    const grab = async (user: string, requestId?: string): Promise<string> => {
      const md = bearer(await h.userToken(`${h.run}-${user}`));
      if (requestId !== undefined) md.set(REQUEST_ID_HEADER, requestId);
      const r = await call(h.grab.grab, h.grab, { campaignId: id, requestId: '' }, md);
      expect(r.outcome).toBe(Outcome.WON);
      return r.packetId;
    };
    const traced = await grab('a', 'abc');
    const untraced = await grab('b');
    const failing = await grab('c', 'fail-me');
    // the entry as grab-svc wrote it before trace ids existed (no "x" field)
    const legacy = `legacy${randomUUID().slice(0, 8)}`;
    await redis.xadd(
      keys.outbox(id),
      '*',
      'c',
      id,
      'p',
      legacy,
      'u',
      `${h.run}-old`,
      'a',
      '5',
      'r',
      'r-old',
      't',
      Date.now(),
    );
    expect(await redis.xrange(keys.outbox(id), '-', '+')).toHaveLength(4);
    expect((await redis.xrange(keys.outbox(id), '-', '+'))[0]?.[1]).toEqual(expect.arrayContaining(['x', 'abc']));

    const { stop } = await testRelay(t, [id]);
    try {
      await pollUntil('four wins queued', async () => (await queueDepth(t.queue)) === 4, 20_000);
    } finally {
      await stop();
    }

    // What is in the queue: look, then give the messages back (closing the channel requeues them).
    const conn = await connectAmqp(TEST_AMQP_URL, `test-trace-peek-${t.queue}`);
    const byPacket = new Map<string, { win: WinEvent; header: unknown }>();
    try {
      const ch = await conn.createChannel();
      for (let i = 0; i < 4; i++) {
        const msg = await ch.get(t.queue, { noAck: false });
        if (!msg) throw new Error('a queued win is missing');
        const win = decodeWin(msg.content);
        byPacket.set(win.packetId, { win, header: msg.properties.headers?.[TRACE_HEADER] });
      }
      await ch.close();
    } finally {
      await conn.close();
    }
    expect(byPacket.get(traced)).toMatchObject({ win: { traceId: 'abc' }, header: 'abc' });
    expect(byPacket.get(failing)).toMatchObject({ win: { traceId: 'fail-me' }, header: 'fail-me' });
    // no x-request-id from the client: the one grab-svc made up travels instead
    const made = byPacket.get(untraced)?.win.traceId ?? '';
    expect(made).toMatch(/^[0-9a-f-]{36}$/);
    expect(byPacket.get(untraced)?.header).toBe(made);
    expect(byPacket.get(legacy)).toMatchObject({ win: { traceId: '', amountCents: 5n }, header: undefined });

    // gift-svc credits them, logging at debug; one win's write keeps failing: requeued, then dead-lettered
    const lines: Line[] = [];
    const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Line) });
    const gift = await testGift(t, pool, {
      log,
      maxAttempts: 2,
      write: async (p, wins) => {
        if (wins.some((w) => w.packetId === failing)) throw new Error('award row refused (test)');
        // the campaign was created without MySQL (this harness has none): its escrow is funded here
        return writeFundedAwards(p, wins);
      },
    });
    try {
      await pollUntil(
        'three credited, one dead-lettered',
        () => gift.stats.credited === 3 && gift.stats.deadLettered === 1,
      );
    } finally {
      await gift.stop();
    }
    const credited = new Map(lines.filter((l) => l.msg === 'win credited').map((l) => [l['packetId'], l]));
    expect(credited.get(traced)).toMatchObject({ traceId: 'abc', campaignId: id });
    expect(credited.get(untraced)).toMatchObject({ traceId: made });
    expect(credited.get(legacy)).toMatchObject({ traceId: '' });
    expect(lines.find((l) => l.msg === 'win write failed; requeued')).toMatchObject({
      packetId: failing,
      traceId: 'fail-me',
      attempts: 1,
    });
    expect(lines.find((l) => l.msg === 'win dead-lettered')).toMatchObject({
      packetId: failing,
      traceId: 'fail-me',
      attempts: 2,
    });
  } finally {
    await dropCampaign(redis, pool, id);
    await dropTopology(t);
  }
});

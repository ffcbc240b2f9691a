/** The outbox entry both ways: what the real grab and take scripts write decodes to the win. */
import { keys, poolId } from '@redpacket/lib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { entryToWin, OUTBOX_FIELDS } from '../src/outbox-entry.js';
import { grabScript, registerScripts, takeScript, type GrabReply } from '../src/scripts.js';
import { startHarness, type Harness } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
  registerScripts(h.redis);
});
afterAll(async () => {
  await h?.close();
});

const allowed = { blocked: false, riskScore: 0 };

/** The pool's one outbox entry and the claim the same win wrote. */
async function written(campaignId: string, pool: number, user: string) {
  const p = poolId(campaignId, pool);
  const entries = await h.redis.xrange(keys.outbox(p), '-', '+');
  expect(entries).toHaveLength(1);
  const [id, fields] = entries[0]!;
  const claim = (await h.redis.hget(keys.claims(p), user)) ?? '';
  return { id, fields, wonAtMs: claim.split('|')[3] ?? '' };
}

function expectWin(reply: GrabReply, e: { id: string; fields: string[]; wonAtMs: string }, win: object): void {
  expect(reply[0]).toBe(1);
  // the field names, in the order OUTBOX_FIELDS documents
  expect(e.fields.filter((_, i) => i % 2 === 0)).toEqual(Object.values(OUTBOX_FIELDS));
  expect(e.wonAtMs).toMatch(/^\d{13}$/);
  expect(entryToWin(e.id, e.fields)).toEqual({
    ...win,
    packetId: reply[1],
    amountCents: BigInt(reply[2]),
    wonAtMs: BigInt(e.wonAtMs),
    streamId: e.id,
  });
}

describe('outbox entry', () => {
  it("decodes grab-6.lua's entry to the win it recorded", async () => {
    const c = await h.create({ packetCount: 3, totalCents: 300n });
    const user = `${h.run}-grabber`;
    const reply = await grabScript(h.redis, c.campaignId, user, 'req-g1', undefined, allowed, 0, 1, 'edge-g1');
    expectWin(reply, await written(c.campaignId, 0, user), {
      campaignId: c.campaignId,
      userId: user,
      requestId: 'req-g1',
      traceId: 'edge-g1',
    });
  });

  it("decodes take-4.lua's entry (a failover's win in another pool) the same way", async () => {
    const c = await h.create({ subPools: 2, packetCount: 4, totalCents: 400n });
    const user = `${h.run}-taker`;
    const reply = await takeScript(h.redis, c.campaignId, 1, user, 'req-t1');
    expectWin(reply, await written(c.campaignId, 1, user), {
      campaignId: c.campaignId,
      userId: user,
      requestId: 'req-t1',
      // no trace id given: written as '' (the field is always there)
      traceId: '',
    });
  });
});

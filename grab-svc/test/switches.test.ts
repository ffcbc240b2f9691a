/**
 * grab.paused through the real server: a paused campaign answers NOT_STARTED with no packet and
 * no change to the campaign within 2 s of the flip, and grabs again once the switch is off.
 * The global switch is set only in a Redis database of this test's own, so no other test's
 * grabs are ever paused.
 */
import { createLogger, grabPausedFor, setSwitch, Switches } from '@redpacket/lib';
import { bearer, call, metricValue, pollUntil, requireRedis, testRedisDb } from '@redpacket/lib/testing';
import { Outcome } from '@redpacket/proto';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from './harness.js';

const OWN_DB_URL = testRedisDb(13);
const log = createLogger('switches-test', 'silent');

let h: Harness;
let ownDb: Redis;
let shared: Redis;
let switches: Switches;
let globalSwitches: Switches;
let hGlobal: Harness;

beforeAll(async () => {
  ownDb = await requireRedis(OWN_DB_URL);
  shared = await requireRedis();
  switches = new Switches(shared, log, { refreshMs: 500 });
  globalSwitches = new Switches(ownDb, log, { refreshMs: 500 });
  await switches.start();
  await globalSwitches.start();
  h = await startHarness({ switches });
  hGlobal = await startHarness({ switches: globalSwitches });
});

afterAll(async () => {
  switches?.stop();
  globalSwitches?.stop();
  await h?.close();
  await hGlobal?.close();
  ownDb?.disconnect();
  shared?.disconnect();
});

const stats = (hh: Harness, id: string) =>
  call(hh.admin.getCampaignStats, hh.admin, { campaignId: id }, bearer(hh.adminToken));

/** Flips `name` in `redis` and waits for `h`'s grabs on campaign `c` to answer `outcome`; returns the ms it took. */
async function flipAndWait(
  hh: Harness,
  redis: Redis,
  name: string,
  on: boolean,
  c: string,
  probeUser: string,
  outcome: Outcome,
): Promise<number> {
  const t0 = Date.now();
  await setSwitch(redis, name, on);
  let i = 0;
  await pollUntil(
    `grabs to answer ${Outcome[outcome]} after ${name} ${on ? 'on' : 'off'}`,
    async () => (await hh.grabAs(c, `${probeUser}-${i++}`)).outcome === outcome,
    2000,
    50,
  );
  return Date.now() - t0;
}

describe('grab.paused', () => {
  it('a paused campaign answers NOT_STARTED without touching it within 2 s, and grabs again after off', async () => {
    const c = await h.create({ packetCount: 100, totalCents: 10_000n });
    const other = await h.create({ packetCount: 5, totalCents: 500n });
    const name = grabPausedFor(c.campaignId);
    try {
      // a first winner, so "already grabbed" would show if the script ran
      const before = await h.grabAs(c.campaignId, `${h.run}-first`);
      expect(before.outcome).toBe(Outcome.WON);

      // the probes of the off->on poll are grabs that may win before the flip is seen
      expect(await flipAndWait(h, shared, name, true, c.campaignId, `${h.run}-on`, Outcome.NOT_STARTED)).toBeLessThan(
        2000,
      );
      const s0 = await stats(h, c.campaignId);
      const pausedBefore = await metricValue('redpacket_grab_outcomes_total', {
        campaign: c.campaignId,
        outcome: 'paused',
      });
      const paused = await Promise.all(Array.from({ length: 20 }, (_, i) => h.grabAs(c.campaignId, `${h.run}-p${i}`)));
      for (const r of paused) {
        expect(r).toMatchObject({
          outcome: Outcome.NOT_STARTED,
          packetId: '',
          amountCents: 0n,
          campaignId: c.campaignId,
        });
        expect(r.nextBatchAt).toBeUndefined();
      }
      // even the winner: the script never ran
      expect((await h.grabAs(c.campaignId, `${h.run}-first`)).outcome).toBe(Outcome.NOT_STARTED);
      // counted as paused, apart from a campaign's real NOT_STARTED
      expect(
        (await metricValue('redpacket_grab_outcomes_total', { campaign: c.campaignId, outcome: 'paused' })) -
          pausedBefore,
      ).toBe(21);
      const s1 = await stats(h, c.campaignId);
      expect(s1.packetsClaimed).toBe(s0.packetsClaimed);
      expect(s1.notStartedCount).toBe(s0.notStartedCount);
      expect(s1.alreadyGrabbedCount).toBe(s0.alreadyGrabbedCount);
      expect(s1.wonCount).toBe(s0.wonCount);
      // another campaign is not paused
      expect((await h.grabAs(other.campaignId, `${h.run}-other`)).outcome).toBe(Outcome.WON);

      expect(await flipAndWait(h, shared, name, false, c.campaignId, `${h.run}-off`, Outcome.WON)).toBeLessThan(2000);
      expect((await h.grabAs(c.campaignId, `${h.run}-first`)).outcome).toBe(Outcome.ALREADY_GRABBED);
    } finally {
      await setSwitch(shared, name, false);
    }
  });

  it('the global switch pauses every campaign (own Redis database for the switch)', async () => {
    const a = await hGlobal.create({ packetCount: 50, totalCents: 5000n });
    const b = await hGlobal.create({ packetCount: 50, totalCents: 5000n });
    try {
      expect(
        await flipAndWait(hGlobal, ownDb, 'grab.paused', true, a.campaignId, `${hGlobal.run}-a`, Outcome.NOT_STARTED),
      ).toBeLessThan(2000);
      expect((await hGlobal.grabAs(b.campaignId, `${hGlobal.run}-b`)).outcome).toBe(Outcome.NOT_STARTED);
      expect(
        await flipAndWait(hGlobal, ownDb, 'grab.paused', false, b.campaignId, `${hGlobal.run}-b2`, Outcome.WON),
      ).toBeLessThan(2000);
      expect((await hGlobal.grabAs(a.campaignId, `${hGlobal.run}-a2`)).outcome).toBe(Outcome.WON);
    } finally {
      await setSwitch(ownDb, 'grab.paused', false);
    }
  });
});

import { status } from '@grpc/grpc-js';
import { keys } from '@redpacket/lib';
import { bearer, call, grpcError, metricValue, pollUntil } from '@redpacket/lib/testing';
import { CampaignState, Outcome, Split } from '@redpacket/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

const stats = (id: string) => call(h.admin.getCampaignStats, h.admin, { campaignId: id }, bearer(h.adminToken));

describe('Grab outcomes', () => {
  it('WON, then ALREADY_GRABBED with the same packet, a same-id retry repeats WON, then SOLD_OUT', async () => {
    const c = await h.create({ packetCount: 2, totalCents: 300n });
    const scriptCalls = { dependency: 'redis', op: 'grab_script' };
    const scriptCallsBefore = await metricValue('redpacket_dependency_duration_seconds_count', scriptCalls);
    const u1 = `${h.run}-a`;
    const first = await h.grabAs(c.campaignId, u1, 'req-1');
    expect(first.outcome).toBe(Outcome.WON);
    expect(first.packetId).toMatch(/^[A-Za-z0-9_-]{16}$/);
    expect(first.amountCents).toBeGreaterThanOrEqual(1n);

    const retry = await h.grabAs(c.campaignId, u1, 'req-1');
    expect(retry).toEqual(first);
    const again = await h.grabAs(c.campaignId, u1, 'req-2');
    expect(again.outcome).toBe(Outcome.ALREADY_GRABBED);
    expect(again.packetId).toBe(first.packetId);
    expect(again.amountCents).toBe(first.amountCents);

    const second = await h.grabAs(c.campaignId, `${h.run}-b`);
    expect(second.outcome).toBe(Outcome.WON);
    expect(second.packetId).not.toBe(first.packetId);
    expect(first.amountCents + second.amountCents).toBe(300n);

    const late = await h.grabAs(c.campaignId, `${h.run}-c`);
    expect(late.outcome).toBe(Outcome.SOLD_OUT);
    expect(late.packetId).toBe('');
    expect(late.nextBatchAt).toBeUndefined();
    expect(await h.redis.get(keys.state(c.campaignId))).toBe('sold_out');

    // the metrics saw the same five answers: by campaign and outcome, and one script call each
    const outcome = (o: string) => metricValue('redpacket_grab_outcomes_total', { campaign: c.campaignId, outcome: o });
    expect([await outcome('won'), await outcome('already_grabbed'), await outcome('sold_out')]).toEqual([3, 1, 1]);
    expect(await outcome('not_started')).toBe(0);
    expect((await metricValue('redpacket_dependency_duration_seconds_count', scriptCalls)) - scriptCallsBefore).toBe(5);

    const s = await stats(c.campaignId);
    expect(s).toMatchObject({
      state: CampaignState.CAMPAIGN_STATE_SOLD_OUT,
      packetsTotal: 2,
      packetsClaimed: 2,
      packetsRemaining: 0,
      amountClaimedCents: 300n,
      amountRemainingCents: 0n,
      wonCount: 2n,
      alreadyGrabbedCount: 2n,
      soldOutCount: 1n,
      outboxPending: 2n,
    });
    // the outbox carries each win once, with everything the credit needs
    const entries = await h.redis.xrange(keys.outbox(c.campaignId), '-', '+');
    const wins = entries.map(([, f]) =>
      Object.fromEntries(f.reduce<string[][]>((acc, v, i) => (i % 2 ? acc : [...acc, [v, f[i + 1]!]]), [])),
    );
    expect(wins.map((w) => w['p']).sort()).toEqual([first.packetId, second.packetId].sort());
    expect(wins.find((w) => w['p'] === first.packetId)).toMatchObject({
      c: c.campaignId,
      u: u1,
      a: String(first.amountCents),
      r: 'req-1',
    });
  });

  it('NOT_STARTED before the start, with the start time, and the gateway flag until then', async () => {
    const startsAt = new Date(Date.now() + 60_000);
    const c = await h.create({ startsAt, expiresAt: new Date(Date.now() + 120_000) });
    expect(c.state).toBe(CampaignState.CAMPAIGN_STATE_SCHEDULED);
    const r = await h.grabAs(c.campaignId, `${h.run}-early`);
    expect(r.outcome).toBe(Outcome.NOT_STARTED);
    expect(r.nextBatchAt?.getTime()).toBe(startsAt.getTime());
    expect(await h.redis.get(keys.state(c.campaignId))).toBe('not_started');
    expect(await h.redis.pttl(keys.state(c.campaignId))).toBeGreaterThan(50_000);
    expect((await stats(c.campaignId)).notStartedCount).toBe(1n);
  });

  it('opens when the start time comes (decided by Redis TIME, no timer)', async () => {
    const c = await h.create({ startsAt: new Date(Date.now() + 400), expiresAt: new Date(Date.now() + 60_000) });
    const user = `${h.run}-waiter`;
    expect((await h.grabAs(c.campaignId, user)).outcome).toBe(Outcome.NOT_STARTED);
    const won = await pollUntil('the campaign to open', async () => {
      const r = await h.grabAs(c.campaignId, user);
      return r.outcome === Outcome.WON ? r : undefined;
    });
    expect(won.amountCents).toBeGreaterThan(0n);
  });

  it('ENDED after expiry, and a winner still gets their packet back', async () => {
    const c = await h.create({ packetCount: 5, totalCents: 500n, expiresAt: new Date(Date.now() + 500) });
    const winner = await h.grabAs(c.campaignId, `${h.run}-w`);
    expect(winner.outcome).toBe(Outcome.WON);
    let probe = 0;
    await pollUntil(
      'expiry',
      async () => (await h.grabAs(c.campaignId, `${h.run}-x${probe++}`)).outcome === Outcome.ENDED,
    );
    const again = await h.grabAs(c.campaignId, `${h.run}-w`);
    expect(again.outcome).toBe(Outcome.ALREADY_GRABBED);
    expect(again.packetId).toBe(winner.packetId);
    expect(await h.redis.get(keys.state(c.campaignId))).toBe('ended');
    expect((await stats(c.campaignId)).state).toBe(CampaignState.CAMPAIGN_STATE_ENDED);
  });

  it('CloseCampaign: no grab succeeds afterwards; closing twice keeps the first reason', async () => {
    const c = await h.create({ packetCount: 5, totalCents: 500n });
    expect((await h.grabAs(c.campaignId, `${h.run}-1`)).outcome).toBe(Outcome.WON);
    const closed = await call(
      h.admin.closeCampaign,
      h.admin,
      { campaignId: c.campaignId, reason: 'fraud wave' },
      bearer(h.adminToken),
    );
    expect(closed.state).toBe(CampaignState.CAMPAIGN_STATE_ENDED);
    expect(closed.closeReason).toBe('fraud wave');
    const r = await h.grabAs(c.campaignId, `${h.run}-2`);
    expect(r.outcome).toBe(Outcome.ENDED);
    const twice = await call(
      h.admin.closeCampaign,
      h.admin,
      { campaignId: c.campaignId, reason: 'other' },
      bearer(h.adminToken),
    );
    expect(twice.closeReason).toBe('fraud wave');
    const s = await stats(c.campaignId);
    expect(s.packetsClaimed).toBe(1);
    expect(s.endedCount).toBe(1n);
  });

  it('batches open one interval apart; SOLD_OUT in between says when the next opens', async () => {
    const start = Date.now();
    const c = await h.create({
      packetCount: 4,
      totalCents: 400n,
      split: Split.EQUAL,
      batches: 2,
      batchIntervalMs: 1500n,
      startsAt: new Date(start),
    });
    expect(c.packetsReleased).toBe(2);
    const before = await stats(c.campaignId);
    expect([before.packetsReleased, before.amountReleasedCents]).toEqual([2, 200n]);
    const a = await h.grabAs(c.campaignId, `${h.run}-b1`);
    const b = await h.grabAs(c.campaignId, `${h.run}-b2`);
    expect([a.outcome, b.outcome]).toEqual([Outcome.WON, Outcome.WON]);
    expect([a.amountCents, b.amountCents]).toEqual([100n, 100n]);
    // per batch: the first released and empty, the second not yet released and full
    const mid = await stats(c.campaignId);
    expect(mid.batchStats.map((x) => [x.batch, x.packets, x.amountCents, x.released, x.remaining])).toEqual([
      [0, 2, 200n, true, 0],
      [1, 2, 200n, false, 2],
    ]);
    expect(mid.batchStats[1]?.opensAt?.getTime()).toBe(start + 1500);
    const wait = await h.grabAs(c.campaignId, `${h.run}-b3`);
    expect(wait.outcome).toBe(Outcome.SOLD_OUT);
    expect(wait.nextBatchAt?.getTime()).toBe(start + 1500);
    expect(await h.redis.get(keys.state(c.campaignId))).toBeNull();
    const next = await pollUntil('the second batch', async () => {
      const r = await h.grabAs(c.campaignId, `${h.run}-b3`);
      return r.outcome === Outcome.WON ? r : undefined;
    });
    expect(next.amountCents).toBe(100n);
    expect(Date.now()).toBeGreaterThanOrEqual(start + 1500);
    const after = await stats(c.campaignId);
    expect([after.packetsReleased, after.amountReleasedCents]).toEqual([4, 400n]);
    expect(after.batchStats.map((x) => [x.released, x.remaining])).toEqual([
      [true, 0],
      [true, 1],
    ]);
  });
});

describe('Eligibility in the grab script', () => {
  it('FORBIDDEN for a blocked user, who can grab again once unblocked', async () => {
    const c = await h.create();
    const user = `${h.run}-blocked`;
    await h.setEligibility([{ userId: user, blocked: true, riskScore: 0 }]);
    try {
      expect((await h.grabAs(c.campaignId, user)).outcome).toBe(Outcome.FORBIDDEN);
      expect((await stats(c.campaignId)).forbiddenCount).toBe(1n);
    } finally {
      await h.setEligibility([{ userId: user, blocked: false, riskScore: 0 }]);
    }
    expect((await h.grabAs(c.campaignId, user)).outcome).toBe(Outcome.WON);
  });

  it('pre-opened only: accounts opened after the start, or of unknown age, are FORBIDDEN', async () => {
    const start = Date.now();
    const c = await h.create({
      startsAt: new Date(start),
      eligibility: { requirePreOpened: true, maxRiskScore: undefined, admissionPpm: undefined },
    });
    const grabWith = async (user: string, openedAtMs?: number) =>
      call(
        h.grab.grab,
        h.grab,
        { campaignId: c.campaignId, requestId: '' },
        bearer(await h.userToken(user, { openedAtMs })),
      );
    expect((await grabWith(`${h.run}-old`, start - 86_400_000)).outcome).toBe(Outcome.WON);
    expect((await grabWith(`${h.run}-new`, start + 60_000)).outcome).toBe(Outcome.FORBIDDEN);
    expect((await grabWith(`${h.run}-unknown`)).outcome).toBe(Outcome.FORBIDDEN);
  });

  it('risk threshold: a score above it is FORBIDDEN', async () => {
    const c = await h.create({ eligibility: { requirePreOpened: false, maxRiskScore: 50, admissionPpm: undefined } });
    const bot = `${h.run}-bot`;
    const human = `${h.run}-human`;
    await h.setEligibility([
      { userId: bot, blocked: false, riskScore: 90 },
      { userId: human, blocked: false, riskScore: 10 },
    ]);
    try {
      expect((await h.grabAs(c.campaignId, bot)).outcome).toBe(Outcome.FORBIDDEN);
      expect((await h.grabAs(c.campaignId, human)).outcome).toBe(Outcome.WON);
      expect((await h.grabAs(c.campaignId, `${h.run}-noscore`)).outcome).toBe(Outcome.WON);
    } finally {
      await h.setEligibility([
        { userId: bot, blocked: false, riskScore: 0 },
        { userId: human, blocked: false, riskScore: 0 },
      ]);
    }
  });

  it('admission ratio: about the share asked for, the same answer on every retry', async () => {
    const c = await h.create({
      packetCount: 1000,
      totalCents: 100_000n,
      eligibility: { requirePreOpened: false, maxRiskScore: undefined, admissionPpm: 250_000 },
    });
    const users = Array.from({ length: 400 }, (_, i) => `${h.run}-adm${i}`);
    const first = await Promise.all(users.map((u) => h.grabAs(c.campaignId, u)));
    const admitted = first.filter((r) => r.outcome === Outcome.WON).length;
    expect(first.every((r) => r.outcome === Outcome.WON || r.outcome === Outcome.FORBIDDEN)).toBe(true);
    expect(admitted).toBeGreaterThan(60); // 100 expected; binomial sd ~8.7
    expect(admitted).toBeLessThan(140);
    const second = await Promise.all(users.map((u) => h.grabAs(c.campaignId, u)));
    second.forEach((r, i) => {
      expect(r.outcome === Outcome.FORBIDDEN).toBe(first[i]!.outcome === Outcome.FORBIDDEN);
    });
    const none = await h.create({ eligibility: { requirePreOpened: false, maxRiskScore: undefined, admissionPpm: 0 } });
    expect((await h.grabAs(none.campaignId, `${h.run}-z`)).outcome).toBe(Outcome.FORBIDDEN);
  });
});

describe('Campaign reads', () => {
  it('GetCampaign for users; ListCampaigns pages newest first for admins', async () => {
    const a = await h.create({ name: 'list-a' });
    const b = await h.create({ name: 'list-b' });
    const got = await call(
      h.grab.getCampaign,
      h.grab,
      { campaignId: a.campaignId },
      bearer(await h.userToken(`${h.run}-reader`)),
    );
    expect(got).toMatchObject({
      campaignId: a.campaignId,
      name: 'list-a',
      totalCents: 10_000n,
      packetCount: 10,
      state: CampaignState.CAMPAIGN_STATE_OPEN,
    });
    const page1 = await call(h.admin.listCampaigns, h.admin, { pageSize: 1, pageToken: '' }, bearer(h.adminToken));
    expect(page1.campaigns).toHaveLength(1);
    expect(page1.nextPageToken).not.toBe('');
    const page2 = await call(
      h.admin.listCampaigns,
      h.admin,
      { pageSize: 500, pageToken: page1.nextPageToken },
      bearer(h.adminToken),
    );
    const ids = [...page1.campaigns, ...page2.campaigns].map((c) => c.campaignId);
    expect(ids.indexOf(b.campaignId)).toBeLessThan(ids.indexOf(a.campaignId));
    expect(ids.indexOf(a.campaignId)).toBeGreaterThanOrEqual(0);
  });
});

describe('gRPC plumbing', () => {
  it('answers the standard health check and an unknown campaign with NOT_FOUND', async () => {
    const err = await grpcError(h.grabAs('no-such-campaign', `${h.run}-nf`));
    expect(err.code).toBe(status.NOT_FOUND);
    expect(err.details).toContain('no-such-campaign');
    expect(await h.redis.exists(keys.claims('no-such-campaign'), keys.stats('no-such-campaign'))).toBe(0);
  });
});

import { createHash } from 'node:crypto';
import { keys } from '@redpacket/lib';
import { pollUntil } from '@redpacket/lib/testing';
import { Outcome, type GrabResponse } from '@redpacket/proto';
import { describe, expect, it } from 'vitest';
import {
  accountApi,
  bearer,
  grabApi,
  importUsers,
  openCampaign,
  useHarness,
  testSigner,
  user,
  type Harness,
} from './harness.js';

let h: Harness;
let accounts: ReturnType<typeof accountApi>;
let g: ReturnType<typeof grabApi>;
useHarness({ grab: true }, (x) => {
  h = x;
  accounts = accountApi(x.accounts);
  g = grabApi(x.grab!, x.admin!);
});

/** Opens an account and returns a token for it, as the app would get it (admin-issued, no password). */
async function account(name: string, riskScore = 0): Promise<{ id: string; token: string }> {
  const id = `${h.prefix}${name}`;
  await accounts.registerUser({ user: user(id, { riskScore }) }, h.adminMd);
  const { token } = await accounts.issueToken({ userId: id, password: '', ttlSeconds: 600 }, h.adminMd);
  return { id, token };
}

const grab = (campaignId: string, token: string, requestId = ''): Promise<GrabResponse> =>
  g.grab({ campaignId, requestId }, bearer(token));

describe('eligibility at grab time', () => {
  it('a blocked user gets FORBIDDEN within one second, and may grab again once unblocked', async () => {
    const before = await openCampaign(h, { packets: 10 });
    const after = await openCampaign(h, { packets: 10 });
    const u = await account('blockme');
    expect((await grab(before.campaignId, u.token)).outcome).toBe(Outcome.WON);

    const t0 = performance.now();
    await accounts.blockUser({ userId: u.id, reason: 'test: propagation' }, h.adminMd);
    await pollUntil(
      'FORBIDDEN after BlockUser',
      async () => (await grab(after.campaignId, u.token)).outcome === Outcome.FORBIDDEN,
      1000,
      5,
    );
    const ms = performance.now() - t0;
    console.log(`blocklist propagation: BlockUser call to first FORBIDDEN in ${ms.toFixed(1)} ms`);
    expect(ms).toBeLessThan(1000);

    await accounts.unblockUser({ userId: u.id }, h.adminMd);
    expect((await grab(after.campaignId, u.token)).outcome).toBe(Outcome.WON);
  });

  it('only accounts opened before the start may grab a pre-opened-only campaign', async () => {
    const early = await account('early');
    const startsAt = new Date(Date.now() + 2000);
    const c = await openCampaign(h, { packets: 10, startsAt, eligibility: { requirePreOpened: true } });
    expect((await grab(c.campaignId, early.token)).outcome).toBe(Outcome.NOT_STARTED);
    await pollUntil('the campaign to start', () => Date.now() > startsAt.getTime() + 50, 5000);
    const late = await account('late');
    const unknown = await testSigner().sign({ userId: `${h.prefix}no-opened-at` });

    expect((await grab(c.campaignId, late.token)).outcome).toBe(Outcome.FORBIDDEN);
    expect((await grab(c.campaignId, unknown)).outcome).toBe(Outcome.FORBIDDEN);
    expect((await grab(c.campaignId, early.token)).outcome).toBe(Outcome.WON);
  });

  it('accounts above the risk threshold never win; score changes apply at once', async () => {
    const c = await openCampaign(h, { packets: 10, eligibility: { requirePreOpened: false, maxRiskScore: 50 } });
    const low = await account('low', 20);
    const edge = await account('edge', 50);
    const high = await account('high', 80);
    const flip = await account('flip');
    expect((await grab(c.campaignId, low.token)).outcome).toBe(Outcome.WON);
    expect((await grab(c.campaignId, edge.token)).outcome).toBe(Outcome.WON);
    expect((await grab(c.campaignId, high.token)).outcome).toBe(Outcome.FORBIDDEN);

    await accounts.setRiskScore({ userId: flip.id, riskScore: 90 }, h.adminMd);
    expect((await grab(c.campaignId, flip.token)).outcome).toBe(Outcome.FORBIDDEN);
    await accounts.setRiskScore({ userId: flip.id, riskScore: 10 }, h.adminMd);
    expect((await grab(c.campaignId, flip.token)).outcome).toBe(Outcome.WON);

    const open = await openCampaign(h, { packets: 10 });
    expect((await grab(open.campaignId, high.token)).outcome).toBe(Outcome.WON);
  });

  it('the admission ratio lets a deterministic share through, the same on every retry', async () => {
    const n = 300;
    const ppm = 300_000;
    const c = await openCampaign(h, { packets: n, eligibility: { requirePreOpened: false, admissionPpm: ppm } });
    const ids = Array.from({ length: n }, (_, i) => `${h.prefix}adm${i}`);
    const imported = await importUsers(
      h.accounts,
      h.adminMd,
      ids.map((id) => user(id)),
    );
    expect(imported.created).toBe(BigInt(n));
    const tokens = await Promise.all(
      ids.map(
        async (id) => (await accounts.issueToken({ userId: id, password: '', ttlSeconds: 600 }, h.adminMd)).token,
      ),
    );

    // What the grab script decides, computed independently: sha1(meta key | user), 32 bits, mod 1e6.
    const admitted = (id: string): boolean =>
      parseInt(
        createHash('sha1')
          .update(`${keys.meta(c.campaignId)}|${id}`)
          .digest('hex')
          .slice(0, 8),
        16,
      ) %
        1_000_000 <
      ppm;

    const first = await Promise.all(tokens.map((t, i) => grab(c.campaignId, t, `first-${i}`)));
    const retry = await Promise.all(tokens.map((t, i) => grab(c.campaignId, t, `first-${i}`)));
    const again = await Promise.all(tokens.map((t, i) => grab(c.campaignId, t, `again-${i}`)));
    let won = 0;
    ids.forEach((id, i) => {
      const expected = admitted(id) ? Outcome.WON : Outcome.FORBIDDEN;
      expect(first[i]!.outcome, id).toBe(expected);
      expect(retry[i]!.outcome, id).toBe(expected);
      expect(again[i]!.outcome, id).toBe(admitted(id) ? Outcome.ALREADY_GRABBED : Outcome.FORBIDDEN);
      expect(again[i]!.packetId).toBe(first[i]!.packetId);
      if (expected === Outcome.WON) won++;
    });
    // 30% of 300 is 90; a binomial stays within ±5 sigma (±40) of it.
    expect(won).toBeGreaterThan(50);
    expect(won).toBeLessThan(130);
  });
});

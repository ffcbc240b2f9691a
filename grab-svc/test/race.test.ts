import { keys } from '@redpacket/lib';
import { bearer, call } from '@redpacket/lib/testing';
import { Outcome, type GrabResponse } from '@redpacket/proto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startHarness, type Harness } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

it('the race: 5,000 packets, 10,000 users each grabbing twice, all at once over gRPC', async () => {
  const PACKETS = 5000;
  const USERS = 10_000;
  const TOTAL = 1_000_000n;
  const c = await h.create({ packetCount: PACKETS, totalCents: TOTAL });
  const users = Array.from({ length: USERS }, (_, i) => `${h.run}-r${i}`);
  const tokens = await Promise.all(users.map((u) => h.userToken(u)));

  let inFlight = 0;
  let maxInFlight = 0;
  const grabOnce = async (i: number, attempt: number): Promise<[number, GrabResponse]> => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    try {
      const res = await call(
        h.grab.grab,
        h.grab,
        { campaignId: c.campaignId, requestId: `r${i}-${attempt}` },
        bearer(tokens[i]!),
      );
      return [i, res];
    } finally {
      inFlight--;
    }
  };
  // both calls of every user go out together, interleaved, before any answer arrives
  const calls: Promise<[number, GrabResponse]>[] = [];
  for (let i = 0; i < USERS; i++) calls.push(grabOnce(i, 1), grabOnce(i, 2));
  const results = await Promise.all(calls);
  expect(maxInFlight).toBeGreaterThanOrEqual(1000);

  const byUser = new Map<number, GrabResponse[]>();
  for (const [i, r] of results) byUser.set(i, [...(byUser.get(i) ?? []), r]);

  const packetOwner = new Map<string, number>();
  let won = 0;
  let sum = 0n;
  let soldOutUsers = 0;
  const problems: string[] = [];
  for (const [i, rs] of byUser) {
    const outcomes = rs.map((r) => r.outcome).sort();
    const w = rs.find((r) => r.outcome === Outcome.WON);
    if (w) {
      won++;
      sum += w.amountCents;
      if (packetOwner.has(w.packetId)) problems.push(`packet ${w.packetId} issued twice`);
      packetOwner.set(w.packetId, i);
      const other = rs.find((r) => r !== w);
      if (
        other?.outcome !== Outcome.ALREADY_GRABBED ||
        other.packetId !== w.packetId ||
        other.amountCents !== w.amountCents
      ) {
        problems.push(`user ${i}: second call ${JSON.stringify(outcomes)} does not repeat the win`);
      }
    } else if (outcomes.every((o) => o === Outcome.SOLD_OUT)) {
      soldOutUsers++;
    } else {
      problems.push(`user ${i}: outcomes ${JSON.stringify(outcomes)}`);
    }
  }
  expect(problems).toEqual([]);
  expect(won).toBe(PACKETS);
  expect(packetOwner.size).toBe(PACKETS);
  expect(sum).toBe(TOTAL);
  expect(soldOutUsers).toBe(USERS - PACKETS);

  // what Redis stored agrees with what the users were told
  const claims = await h.redis.hgetall(keys.claims(c.campaignId));
  expect(Object.keys(claims)).toHaveLength(PACKETS);
  for (const [user, v] of Object.entries(claims)) {
    const [packetId] = v.split('|');
    expect(users[packetOwner.get(packetId!)!]).toBe(user);
  }
  expect(await h.redis.xlen(keys.outbox(c.campaignId))).toBe(PACKETS);

  const s = await call(h.admin.getCampaignStats, h.admin, { campaignId: c.campaignId }, bearer(h.adminToken));
  expect(s).toMatchObject({
    packetsClaimed: PACKETS,
    packetsRemaining: 0,
    amountClaimedCents: TOTAL,
    amountRemainingCents: 0n,
    wonCount: BigInt(PACKETS),
    alreadyGrabbedCount: BigInt(PACKETS),
    soldOutCount: BigInt(2 * (USERS - PACKETS)),
    outboxPending: BigInt(PACKETS),
  });
});

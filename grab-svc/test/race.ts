/** The race proof, shared by the single-Redis, cluster and multi-process tests. */
import { keys, poolId } from '@redpacket/lib';
import { bearer, call } from '@redpacket/lib/testing';
import { Outcome, type GrabResponse } from '@redpacket/proto';
import { expect } from 'vitest';
import { homePool } from '../src/sub-pools.js';
import type { Harness } from './harness.js';

export interface RaceOptions {
  packets?: number;
  users?: number;
  totalCents?: bigint;
  /** Sub-pools of the campaign (1: one pool). */
  subPools?: number;
}

/**
 * 5,000 packets, 10,000 users each grabbing twice, all at once over gRPC; then the invariants on
 * the answers and on what Redis stored.
 */
export async function raceProof(h: Harness, opts: RaceOptions = {}): Promise<void> {
  const PACKETS = opts.packets ?? 5000;
  const USERS = opts.users ?? 10_000;
  const TOTAL = opts.totalCents ?? 1_000_000n;
  const S = opts.subPools ?? 1;
  const c = await h.create({ packetCount: PACKETS, totalCents: TOTAL, subPools: S });
  expect(c.subPools).toBe(S);
  // With sub-pools, 70% of the users share home pool 0, which runs dry while the others still
  // hold packets: those users fail over, contending with the other pools' own users.
  const homeOf = (i: number): number => (i % 10 < 7 ? 0 : 1 + (i % (S - 1)));
  const users = Array.from({ length: USERS }, (_, i) => {
    if (S === 1) return `${h.run}-r${i}`;
    for (let k = 0; ; k++) {
      const id = `${h.run}-r${i}-${k}`;
      if (homePool(id, S) === homeOf(i)) return id;
    }
  });
  const tokens = await Promise.all(users.map((u) => h.userToken(u)));

  let inFlight = 0;
  let maxInFlight = 0;
  const grabOnce = async (i: number, attempt: number): Promise<[number, GrabResponse]> => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    try {
      const client = h.grabClients[i % h.grabClients.length]!;
      const res = await call(
        client.grab,
        client,
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
  // (with sub-pools: every pool's claims, which together hold each winner once)
  const pools = Array.from({ length: S }, (_, p) => poolId(c.campaignId, p));
  const claimsByPool = await Promise.all(pools.map((p) => h.redis.hgetall(keys.claims(p))));
  const claimed = new Map<string, string>();
  let failedOver = 0;
  claimsByPool.forEach((claims, pool) => {
    for (const [user, v] of Object.entries(claims)) {
      if (claimed.has(user)) problems.push(`user ${user} holds claims in two pools`);
      claimed.set(user, v);
      if (homePool(user, S) !== pool) failedOver++;
    }
  });
  expect(problems).toEqual([]);
  expect(claimed.size).toBe(PACKETS);
  for (const [user, v] of claimed) {
    const [packetId] = v.split('|');
    expect(users[packetOwner.get(packetId!)!]).toBe(user);
  }
  const outboxes = await Promise.all(pools.map((p) => h.redis.xlen(keys.outbox(p))));
  expect(outboxes.reduce((a, b) => a + b, 0)).toBe(PACKETS);
  // gateway's short-circuit: set once every packet of every pool is gone
  expect(await h.redis.get(keys.state(c.campaignId))).toBe('sold_out');
  if (S > 1) {
    console.log(`race at S=${S}: ${failedOver} of ${PACKETS} wins came from a pool other than the winner's home`);
    // every pool gave out packets, and some went to users from other home pools
    expect(claimsByPool.every((cl) => Object.keys(cl).length > 0)).toBe(true);
    expect(failedOver).toBeGreaterThan(0);
  }

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
}

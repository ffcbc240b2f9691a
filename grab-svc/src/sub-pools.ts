/**
 * Hot campaigns: the grab over S sub-pools, each on its own Redis Cluster slot.
 *
 * A user's home pool (a hash of the user id) is the one place their claim is checked: the grab
 * script runs there first, and in the common case that is the whole grab, one Redis call. When
 * the home pool is dry, that same call reserves the user for this request ("?|requestId") and
 * answers FAILOVER; only the holder of the reservation then takes a packet from the other pools,
 * one call each (take-4.lua records the win in that pool), and settles the reservation at home
 * (route-2.lua: a route to the win, or removed when every pool is dry). Another request of the
 * same user meanwhile gets PENDING from the home pool and asks again until the reservation is
 * settled, so it answers ALREADY_GRABBED with the same packet, or tries for itself once the
 * holder found nothing. Two wins for one user would need two reservations at home: impossible.
 */
import type { RedisClient } from '@redpacket/lib';
import { keys, poolId } from '@redpacket/lib';
import type { Verdict } from './eligibility-mirror.js';
import { GrabCode } from './grab-code.js';
import { grabScript, routeScript, takeScript, type GrabReply } from './scripts.js';

export const MAX_SUB_POOLS = 64;
/** How long a request waits for another request of the same user to settle its failover. */
const PENDING_DEADLINE_MS = 5000;
/**
 * A reservation this old is taken to be left by a process that died mid-failover (a failover is
 * a few Redis calls). It is looked up, never taken over: see repairStale.
 */
export const STALE_RESERVATION_MS = 3000;
const PENDING_POLL_MS = 2;

/** The user's home pool: FNV-1a of the user id, modulo the pool count. */
export function homePool(userId: string, pools: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < userId.length; i++) {
    h ^= userId.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % pools;
}

/**
 * Sub-pool counts by campaign, read once per process and campaign (it never changes), so a grab
 * stays one call. A campaign that does not exist (yet) is not remembered.
 */
export class PoolCounts {
  private readonly known = new Map<string, number>();
  constructor(
    private readonly redis: RedisClient,
    private readonly max = 100_000,
  ) {}

  async get(campaignId: string): Promise<number> {
    const n = this.known.get(campaignId);
    if (n !== undefined) return n;
    const [exists, pools] = await this.redis.hmget(keys.meta(campaignId), 'id', 'pools');
    const count = Number(pools ?? 1) || 1;
    if (exists) {
      if (this.known.size >= this.max) this.known.clear();
      this.known.set(campaignId, count);
    }
    return count;
  }
}

export interface PooledGrab {
  campaignId: string;
  pools: number;
  userId: string;
  requestId: string;
  openedAtMs: number | undefined;
  verdict: Verdict;
  /** The edge's request id, recorded with the win ('' when none). */
  traceId?: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function grabPooled(redis: RedisClient, g: PooledGrab): Promise<GrabReply> {
  const home = homePool(g.userId, g.pools);
  const deadline = Date.now() + PENDING_DEADLINE_MS;
  for (;;) {
    const reply = await grabScript(
      redis,
      g.campaignId,
      g.userId,
      g.requestId,
      g.openedAtMs,
      g.verdict,
      home,
      g.pools,
      g.traceId,
    );
    if (reply[0] === GrabCode.Failover) return failover(redis, g, home);
    if (reply[0] !== GrabCode.Pending) return reply;
    if (Date.now() - reply[3] > STALE_RESERVATION_MS) {
      const repaired = await repairStale(redis, g, home, reply[1]);
      if (repaired) continue;
      return [GrabCode.SoldOut, '', '0', 0];
    }
    if (Date.now() > deadline)
      throw new Error(`failover of user ${g.userId} still pending after ${PENDING_DEADLINE_MS} ms`);
    await sleep(PENDING_POLL_MS);
  }
}

/**
 * A stale reservation: if the failover that left it took a packet, the win is in another pool's
 * claims, and the route to it is written (true: ask the home pool again). If no pool has one, the
 * user gets SOLD_OUT and the reservation stays: taking it over could give a second win should
 * the old request still be alive, only slow; one lost try is the safe side.
 */
async function repairStale(redis: RedisClient, g: PooledGrab, home: number, holder: string): Promise<boolean> {
  for (let k = 1; k < g.pools; k++) {
    const pool = (home + k) % g.pools;
    const claim = await redis.hget(keys.claims(poolId(g.campaignId, pool)), g.userId);
    if (!claim) continue;
    const [packetId = '', amountCents = '0'] = claim.split('|');
    await routeScript(redis, g.campaignId, home, g.userId, holder, 'won', { pool, packetId, amountCents });
    return true;
  }
  await redis.hincrby(keys.stats(poolId(g.campaignId, home)), 'o:sold_out', 1);
  return false;
}

async function failover(redis: RedisClient, g: PooledGrab, home: number): Promise<GrabReply> {
  for (let k = 1; k < g.pools; k++) {
    const pool = (home + k) % g.pools;
    const r = await takeScript(redis, g.campaignId, pool, g.userId, g.requestId, g.traceId);
    if (r[0] === GrabCode.Won) {
      await routeScript(redis, g.campaignId, home, g.userId, g.requestId, 'won', {
        pool,
        packetId: r[1],
        amountCents: r[2],
      });
      return r;
    }
    if (r[0] === GrabCode.Ended) {
      await routeScript(redis, g.campaignId, home, g.userId, g.requestId, 'ended');
      return [GrabCode.Ended, '', '0', 0];
    }
  }
  await routeScript(redis, g.campaignId, home, g.userId, g.requestId, 'sold_out');
  await flagIfSoldOut(redis, g);
  return [GrabCode.SoldOut, '', '0', 0];
}

/**
 * No single pool knows when all of them are dry, so the failover that found every pool empty
 * checks the total and sets gateway's sold-out flag, as the one-pool script does itself.
 * Only this (already slow) path pays for it, and only until gateway sees the flag.
 */
async function flagIfSoldOut(redis: RedisClient, g: PooledGrab): Promise<void> {
  const ids = Array.from({ length: g.pools }, (_, p) => poolId(g.campaignId, p));
  const [count, ...claimed] = await Promise.all([
    redis.hget(keys.meta(g.campaignId), 'count'),
    ...ids.map((id) => redis.hget(keys.stats(id), 'claimed')),
  ]);
  const total = claimed.reduce((sum, c) => sum + Number(c ?? 0), 0);
  if (count && total >= Number(count)) await redis.set(keys.state(g.campaignId), 'sold_out');
}

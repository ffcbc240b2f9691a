/**
 * Campaign discovery for the outbox relay and the settle timer: the live index (keys.liveCampaigns),
 * read whole however many campaigns it holds, and kept small by dropping each campaign once it is
 * settled and its outboxes are empty. Whoever notices drops it (the relay's pass, the timer's);
 * dropping is final because a settled campaign wins nothing more, so doing it twice is harmless.
 * Also the by-start index users list campaigns from (keys.campaignsByStart), filled once from the
 * live one on an upgraded deployment.
 */
import { keys, poolId, type RedisClient } from '@redpacket/lib';

/**
 * Campaigns queried at once. Not one pipeline (on Redis Cluster the campaigns are on different
 * slots), but not all at once either: 10,000 campaigns would be 30,000 commands in flight.
 */
const CONCURRENCY = 100;
/** Members asked for per ZSCAN call. */
const SCAN_COUNT = 1000;

/** What one pool of a live campaign holds for the relay. */
export interface LivePool {
  /** The pool's id (see poolId): its outbox is keys.outbox(id). */
  id: string;
  /** Not settled, closed or expired: it may still win. */
  open: boolean;
  /** Entries in its outbox. */
  outbox: number;
}

/** A live campaign as the relay and the settle timer see it. */
export interface LiveCampaign {
  id: string;
  /** Its meta hash exists (a campaign whose keys were deleted has none). */
  exists: boolean;
  settled: boolean;
  pools: LivePool[];
}

/** fn over items, at most `limit` calls in flight: a chunk at a time, results in order. */
export async function mapBounded<T, R>(items: T[], fn: (item: T) => Promise<R>, limit = CONCURRENCY): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += limit) out.push(...(await Promise.all(items.slice(i, i + limit).map(fn))));
  return out;
}

/**
 * A campaign with sub-pools has an outbox per pool, each on its own slot: campaign ids become the
 * ids of all their pools (pool ids, which contain a '.', are kept as they are).
 */
export async function withSubPools(redis: RedisClient, ids: string[]): Promise<string[]> {
  const pools = await mapBounded(ids, (id) =>
    id.includes('.') ? Promise.resolve('1') : redis.hget(keys.meta(id), 'pools'),
  );
  return ids.flatMap((id, i) =>
    id.includes('.') ? [id] : Array.from({ length: Number(pools[i] ?? 1) || 1 }, (_, p) => poolId(id, p)),
  );
}

/**
 * Every member of a sorted set with its score, read with ZSCAN (any size, never one huge reply;
 * a member there for the whole scan is seen even while others are removed), oldest score first.
 */
async function scanSorted(redis: RedisClient, key: string): Promise<[id: string, score: string][]> {
  const seen = new Map<string, string>();
  let cursor = '0';
  do {
    const [next, flat] = await redis.zscan(key, cursor, 'COUNT', SCAN_COUNT);
    cursor = next;
    for (let i = 0; i + 1 < flat.length; i += 2) seen.set(flat[i] as string, flat[i + 1] as string);
  } while (cursor !== '0');
  return [...seen].sort(([a, x], [b, y]) => Number(x) - Number(y) || (a < b ? -1 : a > b ? 1 : 0));
}

/** Every campaign id in the live index, oldest first, whatever their number. */
export async function liveCampaigns(redis: RedisClient): Promise<string[]> {
  return (await scanSorted(redis, keys.liveCampaigns)).map(([id]) => id);
}

/** One campaign's meta flags and every pool's outbox length. */
async function inspect(redis: RedisClient, id: string, nowMs: number): Promise<LiveCampaign> {
  const [metaId, settled, closed, expires, pools] = await redis.hmget(
    keys.meta(id),
    'id',
    'settled',
    'closed',
    'expires',
    'pools',
  );
  const isSettled = settled === '1';
  const poolStates = await Promise.all(
    Array.from({ length: Number(pools ?? 1) || 1 }, async (_, p): Promise<LivePool> => {
      const pool = poolId(id, p);
      const [[poolClosed, poolExpires], outbox] = await Promise.all([
        p === 0 ? [closed, expires] : redis.hmget(keys.meta(pool), 'closed', 'expires'),
        redis.xlen(keys.outbox(pool)),
      ]);
      const open = !isSettled && poolClosed !== '1' && nowMs < Number(poolExpires ?? 0);
      return { id: pool, open, outbox };
    }),
  );
  return { id, exists: metaId !== null, settled: isSettled, pools: poolStates };
}

/**
 * Nothing left to do for it: settled (or its keys deleted) with every outbox empty. Final: no
 * grab wins in a settled campaign, so its outboxes only ever shrink.
 */
const finished = (c: LiveCampaign): boolean => (c.settled || !c.exists) && c.pools.every((p) => p.outbox === 0);

/**
 * Inspects these campaigns, drops the finished ones from the live index (idempotent: ZREM of an
 * absent member is a no-op) and returns the others.
 */
export async function pruneLive(redis: RedisClient, ids: string[], nowMs = Date.now()): Promise<LiveCampaign[]> {
  const seen = await mapBounded(ids, (id) => inspect(redis, id, nowMs));
  const gone = seen.filter(finished).map((c) => c.id);
  for (let i = 0; i < gone.length; i += SCAN_COUNT)
    await redis.zrem(keys.liveCampaigns, ...gone.slice(i, i + SCAN_COUNT));
  return seen.filter((c) => !finished(c));
}

/** Every live campaign not yet settled, oldest first; drops the finished ones from the index. */
export async function unsettledCampaigns(redis: RedisClient, nowMs = Date.now()): Promise<string[]> {
  const live = await pruneLive(redis, await liveCampaigns(redis), nowMs);
  return live.filter((c) => c.exists && !c.settled).map((c) => c.id);
}

/**
 * The outboxes worth reading, by pool id: pools still open (they may win more), and any pool,
 * even settled, with entries left (a relay may have died between the broker's confirm and XACK:
 * publishing those again is harmless). Drops the finished campaigns from the index.
 */
export async function activeOutboxes(redis: RedisClient, nowMs = Date.now()): Promise<string[]> {
  const live = await pruneLive(redis, await liveCampaigns(redis), nowMs);
  return live.flatMap((c) => c.pools.filter((p) => p.open || p.outbox > 0).map((p) => p.id));
}

/**
 * The upgrade path: a deployment older than the index has campaigns in keys.campaigns only. Once
 * (until keys.liveCampaignsFilled is set) every one of them not finished joins the index, with
 * its creation time. The marker, not the index's existence, says "done": a campaign created by
 * an upgraded grab-svc before the first relay starts makes the index exist while still partial.
 * Several replicas filling at once add the same members with the same scores; one that re-adds a
 * campaign another just dropped only delays its drop to the next pass. Returns how many it added.
 */
export async function fillLiveIndex(redis: RedisClient, nowMs = Date.now()): Promise<number> {
  if ((await redis.exists(keys.liveCampaignsFilled)) === 1) return 0;
  const all = await scanSorted(redis, keys.campaigns);
  let added = 0;
  for (let i = 0; i < all.length; i += SCAN_COUNT) {
    const chunk = all.slice(i, i + SCAN_COUNT);
    const live = new Set(
      (
        await pruneLive(
          redis,
          chunk.map(([id]) => id),
          nowMs,
        )
      ).map((c) => c.id),
    );
    const members = chunk.filter(([id]) => live.has(id)).flatMap(([id, score]) => [score, id]);
    if (members.length > 0) added += await redis.zadd(keys.liveCampaigns, ...members);
  }
  await redis.set(keys.liveCampaignsFilled, String(nowMs));
  return added;
}

/** Digits of a start time in a by-start member: any ms timestamp up to the year 33658. */
const START_DIGITS = 15;
const START_MEMBER = new RegExp(`^(\\d{${START_DIGITS}})\\|([A-Za-z0-9_-]{1,64})$`);

/**
 * A campaign's member of keys.campaignsByStart: the start time zero-padded, so the members' byte
 * order (ZRANGEBYLEX, all scores 0) is start order, ties by id, and any member is an exact cursor.
 */
export const startMember = (startMs: number, id: string): string =>
  `${String(startMs).padStart(START_DIGITS, '0')}|${id}`;

/** The lowest member starting after `startMs` (a ZRANGEBYLEX bound for "starts at or before"). */
export const startBound = (startMs: number): string => String(startMs + 1).padStart(START_DIGITS, '0');

/** A by-start member's parts, or undefined when it is not one (a page token decodes to one). */
export function parseStartMember(member: string): { startMs: number; id: string } | undefined {
  const m = START_MEMBER.exec(member);
  return m ? { startMs: Number(m[1]), id: m[2]! } : undefined;
}

/**
 * The upgrade path of keys.campaignsByStart, like fillLiveIndex's: once (until
 * keys.campaignsByStartFilled is set) every live campaign neither closed, expired nor settled joins
 * it. Reads the live index, never every campaign. Returns how many it added.
 */
export async function fillStartIndex(redis: RedisClient, nowMs = Date.now()): Promise<number> {
  if ((await redis.exists(keys.campaignsByStartFilled)) === 1) return 0;
  const ids = await liveCampaigns(redis);
  const metas = await mapBounded(ids, (id) =>
    redis.hmget(keys.meta(id), 'start', 'expires', 'closed', 'settled', 'unlisted'),
  );
  const members = ids.flatMap((id, i) => {
    const [start, expires, closed, settled, unlisted] = metas[i] ?? [];
    const listable =
      start != null && closed !== '1' && settled !== '1' && unlisted !== '1' && nowMs < Number(expires ?? 0);
    return listable ? [0, startMember(Number(start), id)] : [];
  });
  let added = 0;
  for (let i = 0; i < members.length; i += 2 * SCAN_COUNT)
    added += await redis.zadd(keys.campaignsByStart, ...members.slice(i, i + 2 * SCAN_COUNT));
  await redis.set(keys.campaignsByStartFilled, String(nowMs));
  return added;
}

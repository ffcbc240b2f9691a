/** Campaign creation, lookup, listing, stats and closing, over an injected Redis client. */
import { randomBytes } from 'node:crypto';
import {
  CAMPAIGN_ID_PATTERN,
  invalidArgument,
  keys,
  notFound,
  poolId,
  USER_ID_PATTERN,
  type RedisClient,
} from '@redpacket/lib';
import {
  CampaignState,
  Split,
  type Campaign,
  type CampaignStats,
  type CreateCampaignRequest,
  type Eligibility,
} from '@redpacket/proto';
import { startMember } from './campaign-index.js';
import { MAX_SUB_POOLS } from './sub-pools.js';
import { batchSizes, MAX_PACKETS, MAX_TOTAL_CENTS, packetsFromSeed, SEED_BYTES, type Packets } from './split.js';

export const MAX_BATCHES = 1000;
export const MAX_INTERVAL_MS = 7 * 24 * 3600 * 1000;
/** Items per RPUSH and commands per pipeline when writing the amounts. */
const PUSH_CHUNK = 5000;
const PIPELINE_PUSHES = 20;

/** What Redis holds in a campaign's meta hash, parsed. */
export interface CampaignMeta {
  id: string;
  name: string;
  totalCents: number;
  count: number;
  split: Split;
  batches: number;
  intervalMs: number;
  startMs: number;
  expiresMs: number;
  ownerId: string;
  createdMs: number;
  closed: boolean;
  closeReason: string;
  batchSizes: number[];
  /** Cents in each batch, known once the amounts are split (empty before). */
  batchSums: number[];
  eligibility: Eligibility;
  settled: boolean;
  /** Sub-pools (1: one pool); see sub-pools.ts. */
  subPools: number;
  /**
   * The secret every packet id and amount is derived from (packetsFromSeed); kept in MySQL, not
   * in Redis. Absent in a meta read back from Redis.
   */
  packetSeed?: Buffer;
  /**
   * Set on a red packet a user sent (SendPacket): the caller's request id, unique per owner in
   * MySQL. Such a campaign is reached by its id only, never listed by ListOpenCampaigns. Absent in
   * a meta read back from Redis.
   */
  sendRequestId?: string;
}

/** Checks a campaign id's shape: INVALID_ARGUMENT before any Redis access. */
export function checkCampaignId(id: string, field = 'campaign_id'): string {
  if (!CAMPAIGN_ID_PATTERN.test(id)) throw invalidArgument(field, 'must be 1-64 characters of [A-Za-z0-9_-]');
  return id;
}

function toSafeNumber(v: bigint, field: string, min: number, max: number): number {
  if (v < BigInt(min) || v > BigInt(max)) throw invalidArgument(field, `must be between ${min} and ${max}`);
  return Number(v);
}

/** Validates a create request completely; returns the normalized campaign (no id yet). */
export function validateCreate(req: CreateCampaignRequest, nowMs: number): Omit<CampaignMeta, 'id'> {
  const name = req.name.trim();
  if (name.length === 0 || name.length > 128) throw invalidArgument('name', 'must be 1-128 characters');
  if (!USER_ID_PATTERN.test(req.ownerId))
    throw invalidArgument('owner_id', 'must be 1-128 characters of [A-Za-z0-9_.@:-]');
  const totalCents = toSafeNumber(req.totalCents, 'total_cents', 1, MAX_TOTAL_CENTS);
  if (!Number.isInteger(req.packetCount) || req.packetCount < 1 || req.packetCount > MAX_PACKETS) {
    throw invalidArgument('packet_count', `must be between 1 and ${MAX_PACKETS}`);
  }
  const count = req.packetCount;
  if (count > totalCents)
    throw invalidArgument('packet_count', 'cannot exceed total_cents (every packet is at least 1 cent)');
  if (req.split !== Split.RANDOM && req.split !== Split.EQUAL)
    throw invalidArgument('split', 'must be RANDOM or EQUAL');
  if (req.batches < 1 || req.batches > Math.min(count, MAX_BATCHES)) {
    throw invalidArgument('batches', `must be between 1 and min(packet_count, ${MAX_BATCHES})`);
  }
  const intervalMs = toSafeNumber(req.batchIntervalMs, 'batch_interval_ms', 0, MAX_INTERVAL_MS);
  if (req.batches > 1 && intervalMs === 0)
    throw invalidArgument('batch_interval_ms', 'must be positive when batches > 1');
  const startMs = req.startsAt ? req.startsAt.getTime() : nowMs;
  if (!Number.isFinite(startMs) || startMs < 0) throw invalidArgument('starts_at', 'invalid timestamp');
  if (startMs > nowMs + 366 * 24 * 3600 * 1000) throw invalidArgument('starts_at', 'more than a year ahead');
  if (!req.expiresAt) throw invalidArgument('expires_at', 'is required');
  const expiresMs = req.expiresAt.getTime();
  if (!Number.isFinite(expiresMs) || expiresMs <= startMs)
    throw invalidArgument('expires_at', 'must be after starts_at');
  if (expiresMs <= nowMs) throw invalidArgument('expires_at', 'must be in the future');
  if (startMs + (req.batches - 1) * intervalMs >= expiresMs) {
    throw invalidArgument('expires_at', 'the last batch would open after expiry');
  }
  const el = req.eligibility;
  if (el?.maxRiskScore !== undefined && el.maxRiskScore > 100)
    throw invalidArgument('eligibility.max_risk_score', 'must be 0-100');
  if (el?.admissionPpm !== undefined && el.admissionPpm > 1_000_000) {
    throw invalidArgument('eligibility.admission_ppm', 'must be 0-1000000');
  }
  const subPools = req.subPools || 1;
  if (!Number.isInteger(subPools) || subPools < 1 || subPools > MAX_SUB_POOLS) {
    throw invalidArgument('sub_pools', `must be between 1 and ${MAX_SUB_POOLS}`);
  }
  if (subPools > count) throw invalidArgument('sub_pools', 'cannot exceed packet_count');
  return {
    subPools,
    name,
    totalCents,
    count,
    split: req.split,
    batches: req.batches,
    intervalMs,
    startMs,
    expiresMs,
    ownerId: req.ownerId,
    createdMs: nowMs,
    closed: false,
    closeReason: '',
    batchSizes: batchSizes(count, req.batches),
    batchSums: [],
    eligibility: {
      requirePreOpened: el?.requirePreOpened ?? false,
      maxRiskScore: el?.maxRiskScore,
      admissionPpm: el?.admissionPpm,
    },
    settled: false,
    packetSeed: randomBytes(SEED_BYTES),
  };
}

/**
 * 72 random bits in base64url, never starting with '-': an id like "-x3…" reads as an option to
 * every command line (`redpacket campaign settle -x3…` was refused as a usage error).
 */
export function newCampaignId(): string {
  for (;;) {
    const id = randomBytes(9).toString('base64url');
    if (id[0] !== '-') return id;
  }
}

/**
 * Writes a validated campaign: its packets derived from its seed (see packetsFromSeed), then
 * its Redis state (writeCampaignState).
 */
export async function writeCampaign(redis: RedisClient, c: CampaignMeta): Promise<void> {
  const seed = (c.packetSeed ??= randomBytes(SEED_BYTES));
  const packets = packetsFromSeed(seed, c.totalCents, c.count, c.split === Split.EQUAL ? 'EQUAL' : 'RANDOM');
  c.batchSums = batchSums(c, packets.amounts);
  await writeCampaignState(redis, c, packets);
}

/** Cents in each batch. */
export function batchSums(c: CampaignMeta, amounts: number[]): number[] {
  const sums: number[] = [];
  let offset = 0;
  for (const size of c.batchSizes) {
    let sum = 0;
    for (let j = 0; j < size; j++) sum += amounts[offset + j]!;
    sums.push(sum);
    offset += size;
  }
  return sums;
}

/** Counters of one pool's stats hash as a restore finds them (a new campaign: all 0). */
export interface PoolClaims {
  claimed: number;
  claimedCents: number;
}

/** What a restore changes in writeCampaignState; a new campaign passes nothing. */
export interface StateOptions {
  /** Campaign-wide packet indexes not to push (won before the state was lost). */
  taken?: Set<number>;
  /** Per pool: the claims already made. */
  claims?: PoolClaims[];
  /** Runs once the lists are written and before any meta hash (restore writes claims there). */
  beforeMeta?: () => Promise<void>;
}

/**
 * Writes a campaign's Redis state: the amounts first, in pipelined RPUSH chunks (one list per
 * batch and pool), then the meta hashes, pool 0's last: it is what makes the campaign exist
 * for the grab script. Packet k of a batch goes to pool k mod S, in order, so a pool's pop
 * order is known from the packets alone (what RestoreCampaign relies on).
 */
export async function writeCampaignState(
  redis: RedisClient,
  c: CampaignMeta,
  packets: Packets,
  o: StateOptions = {},
): Promise<void> {
  const { ids, amounts } = packets;
  const taken = o.taken;
  let pipe = redis.pipeline();
  let queued = 0;
  let offset = 0;
  const S = c.subPools;
  const poolCounts = new Array<number>(S).fill(0);
  for (let b = 0; b < c.batches; b++) {
    const size = c.batchSizes[b] ?? 0;
    // With sub-pools, packet k of the campaign goes to pool k mod S, so every batch is spread
    // evenly; each pool's lists get their own pipeline (another slot, on a cluster another node).
    for (let pool = 0; pool < S; pool++) {
      const key = keys.batch(poolId(c.id, pool), b);
      // items built straight into each chunk: no index arrays to slice and map (GC was a third
      // of the time it took to create a million packets)
      let items: string[] = [];
      for (let j = pool; j < size; j += S) {
        const k = offset + j;
        poolCounts[pool]!++;
        if (taken?.has(k)) continue;
        items.push(`${ids[k]}|${amounts[k]}`);
        if (items.length === PUSH_CHUNK || j + S >= size) {
          pipe.rpush(key, ...items);
          items = [];
          if (++queued === PIPELINE_PUSHES) {
            await execOrThrow(pipe);
            pipe = redis.pipeline();
            queued = 0;
          }
        }
      }
      if (items.length > 0) pipe.rpush(key, ...items);
      if (S > 1) {
        await execOrThrow(pipe);
        pipe = redis.pipeline();
        queued = 0;
      }
    }
    offset += size;
  }
  await execOrThrow(pipe);
  pipe = redis.pipeline();
  await o.beforeMeta?.();
  const el = c.eligibility;
  const stats = (pool: number) => ({
    cursor: 0,
    claimed: o.claims?.[pool]?.claimed ?? 0,
    claimed_cents: o.claims?.[pool]?.claimedCents ?? 0,
  });
  const closed = c.closed ? '1' : '0';
  const settled = c.settled ? { settled: '1' } : {};
  // Pools 1..S-1 first: pool 0's meta is what makes the campaign exist for grabs.
  for (let pool = S - 1; pool >= 1; pool--) {
    const p = poolId(c.id, pool);
    await redis
      .multi()
      .hset(keys.stats(p), stats(pool))
      .hset(keys.meta(p), {
        pool,
        pools: S,
        pcount: poolCounts[pool]!,
        batches: c.batches,
        interval: c.intervalMs,
        start: c.startMs,
        expires: c.expiresMs,
        count: c.count,
        closed,
        req_pre: el.requirePreOpened ? '1' : '0',
        max_risk: el.maxRiskScore ?? '',
        admit_ppm: el.admissionPpm ?? '',
        ...settled,
      })
      .exec();
  }
  pipe.hset(keys.stats(c.id), stats(0));
  if (S > 1) pipe.hset(keys.meta(c.id), { pool: 0, pools: S, pcount: poolCounts[0]! });
  pipe.hset(keys.meta(c.id), {
    id: c.id,
    name: c.name,
    total: c.totalCents,
    count: c.count,
    split: c.split,
    batches: c.batches,
    interval: c.intervalMs,
    start: c.startMs,
    expires: c.expiresMs,
    owner: c.ownerId,
    created: c.createdMs,
    closed,
    sizes: c.batchSizes.join(','),
    sums: c.batchSums.join(','),
    req_pre: el.requirePreOpened ? '1' : '0',
    max_risk: el.maxRiskScore ?? '',
    admit_ppm: el.admissionPpm ?? '',
    ...(c.closed ? { close_reason: c.closeReason } : {}),
    // Read by fillStartIndex, which must not list a sent packet either.
    ...(c.sendRequestId !== undefined ? { unlisted: '1' } : {}),
    ...settled,
  });
  // gateway's short-circuit: the flag expires by itself when the campaign starts.
  const untilStart = c.startMs - Date.now();
  if (c.closed) pipe.set(keys.state(c.id), 'ended');
  else if (untilStart > 0) pipe.set(keys.state(c.id), 'not_started', 'PX', untilStart);
  await execOrThrow(pipe);
  // Not in the pipeline: the indexes are on other Redis Cluster slots than the campaign.
  await Promise.all([
    redis.zadd(keys.campaigns, c.createdMs, c.id),
    redis.zadd(keys.liveCampaigns, c.createdMs, c.id),
    // A restore of a closed or settled campaign must not list it to users again; a sent packet
    // is for whoever the sender gives its id to.
    c.closed || c.settled || c.sendRequestId !== undefined
      ? undefined
      : redis.zadd(keys.campaignsByStart, 0, startMember(c.startMs, c.id)),
  ]);
}

/** What writeOpenCampaign needs: the rest has the defaults of a plain campaign. */
export interface OpenCampaign {
  id: string;
  count: number;
  /** Default: 100 cents a packet. */
  totalCents?: number;
  split?: Split;
  batches?: number;
  intervalMs?: number;
  subPools?: number;
  name?: string;
}

/**
 * A campaign open since a second ago, for an hour, written straight to Redis (no MySQL row, so not
 * funded): what benchmarks and tests of the Redis side grab from.
 */
export async function writeOpenCampaign(redis: RedisClient, o: OpenCampaign): Promise<CampaignMeta> {
  const now = Date.now();
  const valid = validateCreate(
    {
      name: o.name ?? o.id,
      totalCents: BigInt(o.totalCents ?? o.count * 100),
      packetCount: o.count,
      split: o.split ?? Split.EQUAL,
      batches: o.batches ?? 1,
      batchIntervalMs: BigInt(o.intervalMs ?? 0),
      startsAt: new Date(now - 1000),
      expiresAt: new Date(now + 3_600_000),
      ownerId: 'redis-side',
      eligibility: undefined,
      subPools: o.subPools,
    },
    now,
  );
  const meta = { ...valid, id: o.id };
  await writeCampaign(redis, meta);
  return meta;
}

async function execOrThrow(pipe: ReturnType<RedisClient['pipeline']>): Promise<void> {
  const results = await pipe.exec();
  for (const [err] of results ?? []) if (err) throw err;
}

function parseMeta(h: Record<string, string>): CampaignMeta | undefined {
  if (!h['id']) return undefined;
  const num = (k: string): number => Number(h[k] ?? 0);
  const opt = (k: string): number | undefined => (h[k] ? Number(h[k]) : undefined);
  return {
    id: h['id'],
    name: h['name'] ?? '',
    totalCents: num('total'),
    count: num('count'),
    split: num('split') as Split,
    batches: num('batches'),
    intervalMs: num('interval'),
    startMs: num('start'),
    expiresMs: num('expires'),
    ownerId: h['owner'] ?? '',
    createdMs: num('created'),
    closed: h['closed'] === '1',
    closeReason: h['close_reason'] ?? '',
    batchSizes: (h['sizes'] ?? '').split(',').map(Number),
    batchSums: (h['sums'] ?? '').split(',').map(Number),
    eligibility: {
      requirePreOpened: h['req_pre'] === '1',
      maxRiskScore: opt('max_risk'),
      admissionPpm: opt('admit_ppm'),
    },
    settled: h['settled'] === '1',
    subPools: Number(h['pools'] ?? 1) || 1,
  };
}

export async function loadMeta(redis: RedisClient, id: string): Promise<CampaignMeta> {
  const meta = parseMeta(await redis.hgetall(keys.meta(id)));
  if (!meta) throw notFound(`campaign ${id}`);
  return meta;
}

/** How many batches have reached their release time (the grab script decides the same way). */
export function releasedBatches(m: CampaignMeta, nowMs: number): number {
  if (nowMs < m.startMs) return 0;
  return m.intervalMs > 0 ? Math.min(m.batches, Math.floor((nowMs - m.startMs) / m.intervalMs) + 1) : m.batches;
}

const sumFirst = (xs: number[], n: number): number => xs.slice(0, n).reduce((a, b) => a + b, 0);

/** Packets in batches whose release time has come. */
export const releasedPackets = (m: CampaignMeta, nowMs: number): number =>
  sumFirst(m.batchSizes, releasedBatches(m, nowMs));

export function campaignState(m: CampaignMeta, claimed: number, nowMs: number): CampaignState {
  if (m.settled) return CampaignState.CAMPAIGN_STATE_SETTLED;
  if (m.closed || nowMs >= m.expiresMs) return CampaignState.CAMPAIGN_STATE_ENDED;
  if (nowMs < m.startMs) return CampaignState.CAMPAIGN_STATE_SCHEDULED;
  if (claimed >= m.count) return CampaignState.CAMPAIGN_STATE_SOLD_OUT;
  return CampaignState.CAMPAIGN_STATE_OPEN;
}

export function toCampaign(m: CampaignMeta, stats: Record<string, string>, nowMs: number): Campaign {
  const claimed = Number(stats['claimed'] ?? 0);
  return {
    campaignId: m.id,
    name: m.name,
    totalCents: BigInt(m.totalCents),
    packetCount: m.count,
    split: m.split,
    batches: m.batches,
    batchIntervalMs: BigInt(m.intervalMs),
    startsAt: new Date(m.startMs),
    expiresAt: new Date(m.expiresMs),
    ownerId: m.ownerId,
    state: campaignState(m, claimed, nowMs),
    createdAt: new Date(m.createdMs),
    packetsReleased: releasedPackets(m, nowMs),
    packetsClaimed: claimed,
    amountClaimedCents: BigInt(stats['claimed_cents'] ?? 0),
    eligibility: m.eligibility,
    closeReason: m.closeReason,
    subPools: m.subPools,
  };
}

/** A campaign's stats hash, summed over its sub-pools (numbers only; one pool: as stored). */
export async function loadStats(redis: RedisClient, id: string, pools: number): Promise<Record<string, string>> {
  if (pools <= 1) return redis.hgetall(keys.stats(id));
  const all = await Promise.all(Array.from({ length: pools }, (_, p) => redis.hgetall(keys.stats(poolId(id, p)))));
  const sum: Record<string, string> = {};
  for (const h of all) for (const [k, v] of Object.entries(h)) sum[k] = String(Number(sum[k] ?? 0) + Number(v));
  return sum;
}

export async function getCampaign(redis: RedisClient, id: string, nowMs = Date.now()): Promise<Campaign> {
  const meta = await loadMeta(redis, id);
  return toCampaign(meta, await loadStats(redis, id, meta.subPools), nowMs);
}

export async function getStats(redis: RedisClient, id: string, nowMs = Date.now()): Promise<CampaignStats> {
  const meta = await loadMeta(redis, id);
  const pools = Array.from({ length: meta.subPools }, (_, p) => poolId(id, p));
  const [stats, outboxLens] = await Promise.all([
    loadStats(redis, id, meta.subPools),
    Promise.all(pools.map((p) => redis.xlen(keys.outbox(p)))),
  ]);
  const outboxLen = outboxLens.reduce((a, b) => a + b, 0);
  const released = releasedBatches(meta, nowMs);
  // LLEN is O(1): one a batch and pool, all at once (on a cluster the pools are other slots).
  const remaining = await Promise.all(
    meta.batchSizes.map(async (_, b) => {
      const lens = await Promise.all(pools.map((p) => redis.llen(keys.batch(p, b))));
      return lens.reduce((x, y) => x + y, 0);
    }),
  );
  const batchStats = meta.batchSizes.map((packets, b) => ({
    batch: b,
    packets,
    amountCents: BigInt(meta.batchSums[b] ?? 0),
    released: b < released,
    remaining: remaining[b] ?? 0,
    opensAt: new Date(meta.startMs + b * meta.intervalMs),
  }));
  const n = (k: string): number => Number(stats[k] ?? 0);
  const claimed = n('claimed');
  const claimedCents = n('claimed_cents');
  return {
    campaignId: id,
    state: campaignState(meta, claimed, nowMs),
    packetsTotal: meta.count,
    packetsReleased: releasedPackets(meta, nowMs),
    packetsClaimed: claimed,
    packetsRemaining: meta.count - claimed,
    amountTotalCents: BigInt(meta.totalCents),
    amountClaimedCents: BigInt(claimedCents),
    amountRemainingCents: BigInt(meta.totalCents - claimedCents),
    wonCount: BigInt(n('o:won')),
    alreadyGrabbedCount: BigInt(n('o:already')),
    soldOutCount: BigInt(n('o:sold_out')),
    notStartedCount: BigInt(n('o:not_started')),
    endedCount: BigInt(n('o:ended')),
    forbiddenCount: BigInt(n('o:forbidden')),
    outboxPending: BigInt(outboxLen),
    observedAt: new Date(nowMs),
    amountReleasedCents: BigInt(sumFirst(meta.batchSums, released)),
    batchStats,
  };
}

/** Lists campaigns newest first; the page token is the offset. */
export async function listCampaigns(
  redis: RedisClient,
  pageSize: number,
  pageToken: string,
  nowMs = Date.now(),
): Promise<{ campaigns: Campaign[]; nextPageToken: string }> {
  if (pageSize < 0 || pageSize > 500) throw invalidArgument('page_size', 'must be 0-500');
  const size = pageSize || 50;
  if (pageToken !== '' && !/^\d{1,9}$/.test(pageToken)) throw invalidArgument('page_token', 'malformed');
  const offset = pageToken === '' ? 0 : Number(pageToken);
  const ids = await redis.zrevrange(keys.campaigns, offset, offset + size);
  const page = ids.slice(0, size);
  // Concurrent commands, not one pipeline: on Redis Cluster the campaigns live on different slots.
  const res = await Promise.all(
    page.map((id) => Promise.all([redis.hgetall(keys.meta(id)), redis.hgetall(keys.stats(id))])),
  );
  const campaigns: Campaign[] = [];
  for (const [h, stats] of res) {
    const meta = parseMeta(h);
    if (meta)
      campaigns.push(
        toCampaign(meta, meta.subPools > 1 ? await loadStats(redis, meta.id, meta.subPools) : stats, nowMs),
      );
  }
  return { campaigns, nextPageToken: ids.length > size ? String(offset + size) : '' };
}

/** Closes a campaign: no grab succeeds afterwards. Closing again keeps the first reason. */
export async function closeCampaign(
  redis: RedisClient,
  id: string,
  reason: string,
  nowMs = Date.now(),
): Promise<Campaign> {
  if (reason.length > 256) throw invalidArgument('reason', 'at most 256 characters');
  const meta = await loadMeta(redis, id);
  if (!meta.closed) {
    // Other pools first, so no pool still grabs once the campaign reads as closed.
    for (let p = 1; p < meta.subPools; p++) await redis.hset(keys.meta(poolId(id, p)), { closed: '1' });
    await redis
      .multi()
      .hset(keys.meta(id), { closed: '1', close_reason: reason, closed_at: nowMs })
      .set(keys.state(id), 'ended')
      .exec();
  }
  return getCampaign(redis, id, nowMs);
}

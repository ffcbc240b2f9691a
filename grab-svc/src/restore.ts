/**
 * RestoreCampaign: rebuilds a campaign's Redis state, lost entirely, from MySQL. The packets come
 * back from the seed in the campaign's row, the claims from the awards (and parked dead letters);
 * what no surviving store knows is reported exactly and never issued again.
 */
import { failedPrecondition, keys, notFound, poolId, type RedisClient } from '@redpacket/lib';
import type { Pool } from '@redpacket/db';
import { Split, type LostWin, type RestoreReport } from '@redpacket/proto';
import { connectAmqp, decodeWin } from '@redpacket/wins';
import type { RowDataPacket } from 'mysql2/promise';
import {
  batchSums,
  checkCampaignId,
  getCampaign,
  writeCampaignState,
  type CampaignMeta,
  type PoolClaims,
} from './campaigns.js';
import { DEFAULT_RELAY_GROUP } from './relay/outbox-relay.js';
import { batchSizes, packetsFromSeed } from './split.js';
import { homePool } from './sub-pools.js';

export interface RestoreOptions {
  /** Restore although wins are still queued for delivery (see RestoreCampaignRequest). */
  allowQueued?: boolean;
  /** Ready messages in the wins queue; without it the queue is not checked. */
  queueDepth?: () => Promise<number>;
}

/** A win some surviving store knows: an award, or a dead letter not yet re-driven. */
interface KnownWin {
  packetId: string;
  userId: string;
  amount: number;
  requestId: string;
  wonAtMs: number;
}

/** Where packet k of the campaign sits: its batch, its pool and its place in that pool's pop order. */
interface Place {
  batch: number;
  pool: number;
  pos: number;
}

/** Fields and items per HSET when writing the claims back. */
const HSET_CHUNK = 1000;

/** The campaign's row as CampaignMeta (with its seed), or NOT_FOUND. */
async function loadRow(pool: Pool, id: string): Promise<CampaignMeta> {
  const [rows] = await pool.query<RowDataPacket[]>(
    'SELECT c.*, s.campaign_id AS settled FROM campaigns c LEFT JOIN settlements s USING (campaign_id) ' +
      'WHERE c.campaign_id = ?',
    [id],
  );
  const r = rows[0];
  if (!r) throw notFound(`campaign ${id}`);
  const seed = r['packet_seed'] as Buffer | null;
  if (!seed) throw failedPrecondition(`campaign ${id} was created before packet seeds were kept: it cannot be rebuilt`);
  const count = Number(r['packet_count']);
  const batches = Number(r['batches']);
  const nullable = (v: unknown): number | undefined => (v === null || v === undefined ? undefined : Number(v));
  return {
    id,
    name: String(r['name']),
    totalCents: Number(r['total_cents']),
    count,
    split: Number(r['split']) as Split,
    batches,
    intervalMs: Number(r['batch_interval_ms']),
    startMs: (r['starts_at'] as Date).getTime(),
    expiresMs: (r['expires_at'] as Date).getTime(),
    ownerId: String(r['owner_id']),
    createdMs: (r['created_at'] as Date).getTime(),
    closed: r['closed_at'] !== null,
    closeReason: String(r['close_reason'] ?? ''),
    batchSizes: batchSizes(count, batches),
    batchSums: [],
    eligibility: {
      requirePreOpened: Number(r['req_pre']) === 1,
      maxRiskScore: nullable(r['max_risk']),
      admissionPpm: nullable(r['admit_ppm']),
    },
    settled: r['settled'] !== null,
    subPools: Number(r['sub_pools']) || 1,
    packetSeed: seed,
    sendRequestId:
      r['send_request_id'] === null || r['send_request_id'] === undefined ? undefined : String(r['send_request_id']),
  };
}

/** Awards first; a dead letter adds a win only for a packet no award has. */
async function knownWins(pool: Pool, id: string, notes: string[]): Promise<Map<string, KnownWin>> {
  const [awards] = await pool.query<RowDataPacket[]>(
    'SELECT packet_id, user_id, amount_cents, request_id, won_at FROM awards WHERE campaign_id = ?',
    [id],
  );
  const wins = new Map<string, KnownWin>();
  for (const a of awards) {
    wins.set(String(a['packet_id']), {
      packetId: String(a['packet_id']),
      userId: String(a['user_id']),
      amount: Number(a['amount_cents']),
      requestId: String(a['request_id']),
      wonAtMs: (a['won_at'] as Date).getTime(),
    });
  }
  const [dead] = await pool.query<RowDataPacket[]>('SELECT body FROM dead_letters WHERE campaign_id = ?', [id]);
  let parked = 0;
  const users = new Set([...wins.values()].map((w) => w.userId));
  for (const d of dead) {
    let w;
    try {
      w = decodeWin(d['body'] as Buffer);
    } catch {
      continue; // a malformed message names no win to restore
    }
    if (w.campaignId !== id || wins.has(w.packetId) || users.has(w.userId)) continue;
    users.add(w.userId);
    parked++;
    wins.set(w.packetId, {
      packetId: w.packetId,
      userId: w.userId,
      amount: Number(w.amountCents),
      requestId: w.requestId,
      wonAtMs: Number(w.wonAtMs),
    });
  }
  if (parked > 0) {
    notes.push(`${parked} claim(s) restored from dead letters: re-drive them before settling`);
  }
  return wins;
}

/** Every packet's batch, pool and pop position, exactly as writeCampaignState lays them out. */
function places(m: CampaignMeta): Place[] {
  const S = m.subPools;
  const out = new Array<Place>(m.count);
  const next = new Array<number>(S).fill(0);
  let k = 0;
  m.batchSizes.forEach((size, batch) => {
    for (let j = 0; j < size; j++, k++) {
      const pool = j % S;
      out[k] = { batch, pool, pos: next[pool]!++ };
    }
  });
  return out;
}

/**
 * Rebuilds campaign `id` in Redis from MySQL. Refused (FAILED_PRECONDITION) while any of its
 * pools still has Redis state (nothing is overwritten) or, unless allowQueued, while wins wait in
 * the wins queue (their awards would be missing from the rebuild).
 */
export async function restoreCampaign(
  redis: RedisClient,
  pool: Pool,
  id: string,
  o: RestoreOptions = {},
): Promise<RestoreReport> {
  checkCampaignId(id);
  const m = await loadRow(pool, id);
  const poolIds = Array.from({ length: m.subPools }, (_, p) => poolId(id, p));
  const present = await Promise.all(poolIds.map((p) => redis.exists(keys.meta(p))));
  const still = poolIds.filter((_, i) => present[i]);
  if (still.length > 0) {
    throw failedPrecondition(
      `campaign ${id} still has Redis state (${still.join(', ')}): nothing overwritten; restore is for a lost state`,
    );
  }
  const queued = o.queueDepth ? await o.queueDepth() : 0;
  if (queued > 0 && !o.allowQueued) {
    throw failedPrecondition(
      `${queued} win(s) still queued for delivery: wait until gift-svc's backlog is 0 (or pass allow_queued)`,
    );
  }

  const notes: string[] = [];
  const packets = packetsFromSeed(m.packetSeed!, m.totalCents, m.count, m.split === Split.EQUAL ? 'EQUAL' : 'RANDOM');
  m.batchSums = batchSums(m, packets.amounts);
  const where = places(m);
  const index = new Map<string, number>();
  packets.ids.forEach((pid, k) => index.set(pid, k));

  const wins = await knownWins(pool, id, notes);
  // The frontier of a pool: the last pop position a known win took. Everything before it was
  // popped before the loss too (a pool pops in order), whoever won it.
  const frontier = new Array<number>(m.subPools).fill(-1);
  const won = new Map<number, KnownWin>();
  let strangers = 0;
  for (const w of wins.values()) {
    const k = index.get(w.packetId);
    if (k === undefined) {
      strangers++;
      continue;
    }
    won.set(k, w);
    const at = where[k]!;
    frontier[at.pool] = Math.max(frontier[at.pool]!, at.pos);
  }
  if (strangers > 0) notes.push(`${strangers} award(s) name no packet of this campaign: left out (see reconcile)`);

  const taken = new Set<number>();
  const lost: LostWin[] = [];
  let lostCents = 0;
  for (let k = 0; k < m.count; k++) {
    const at = where[k]!;
    if (at.pos > frontier[at.pool]!) continue;
    taken.add(k);
    if (won.has(k)) continue;
    const amount = packets.amounts[k]!;
    lost.push({ packetId: packets.ids[k]!, amountCents: BigInt(amount), batch: at.batch, pool: at.pool });
    lostCents += amount;
  }

  const claims: PoolClaims[] = poolIds.map(() => ({ claimed: 0, claimedCents: 0 }));
  for (const [k, w] of won) {
    const c = claims[where[k]!.pool]!;
    c.claimed++;
    c.claimedCents += w.amount;
  }
  await writeCampaignState(redis, m, packets, {
    taken,
    claims,
    beforeMeta: () => writeClaims(redis, m, where, won, lost),
  });

  notes.push(...explain(id, lost.length, queued));
  const claimedCents = claims.reduce((s, c) => s + c.claimedCents, 0);
  const remainingCents = packets.amounts.reduce((s, a, k) => (taken.has(k) ? s : s + a), 0);
  return {
    campaignId: id,
    packetsTotal: m.count,
    claimsRestored: won.size,
    amountClaimedCents: BigInt(claimedCents),
    packetsRemaining: m.count - taken.size,
    amountRemainingCents: BigInt(remainingCents),
    lostWins: lost,
    amountLostCents: BigInt(lostCents),
    winsQueued: BigInt(queued),
    notes,
    campaign: await getCampaign(redis, id),
  };
}

/**
 * The claims (and, with sub-pools, the routes at each winner's home pool), the lost packets and
 * the outboxes with the relay's group: all before any meta hash, so the campaign exists for
 * grabs only once its winners are known again.
 */
async function writeClaims(
  redis: RedisClient,
  m: CampaignMeta,
  where: Place[],
  won: Map<number, KnownWin>,
  lost: LostWin[],
): Promise<void> {
  const byPool = new Map<string, Record<string, string>[]>();
  const add = (key: string, field: string, value: string): void => {
    const chunks = byPool.get(key) ?? [];
    let last = chunks[chunks.length - 1];
    if (!last || Object.keys(last).length >= HSET_CHUNK) chunks.push((last = {}));
    last[field] = value;
    byPool.set(key, chunks);
  };
  for (const [k, w] of won) {
    const p = where[k]!.pool;
    add(keys.claims(poolId(m.id, p)), w.userId, `${w.packetId}|${w.amount}|${w.requestId}|${w.wonAtMs}`);
    if (m.subPools > 1) {
      const home = homePool(w.userId, m.subPools);
      // The home pool is where a user's claim is checked: a win from another pool needs its route.
      if (home !== p) add(keys.route(poolId(m.id, home)), w.userId, `${p}|${w.packetId}|${w.amount}|${w.requestId}`);
    }
  }
  for (const l of lost) add(keys.lost(m.id), l.packetId, String(l.amountCents));
  // One key at a time in order (a cluster spreads them over slots); few calls per thousand claims.
  for (const [key, chunks] of byPool) for (const c of chunks) await redis.hset(key, c);
  for (let p = 0; p < m.subPools; p++) {
    // A live relay may have made the (empty) stream and group again already: that one serves.
    await redis
      .xgroup('CREATE', keys.outbox(poolId(m.id, p)), DEFAULT_RELAY_GROUP, '0', 'MKSTREAM')
      .catch((err: Error) => {
        if (!err.message.includes('BUSYGROUP')) throw err;
      });
  }
}

/** The report's notes on what cannot be known. */
function explain(id: string, lost: number, queued: number): string[] {
  const notes = [
    'per-outcome counters (won, already grabbed, sold out, ...) restart at 0; claimed counts only the restored claims',
    `a win answered just before the loss whose outbox entry never reached RabbitMQ, on a packet past the last ` +
      'known win of its pool, has no surviving copy: that packet is back in its batch and will be issued again',
  ];
  if (lost > 0) {
    notes.push(
      `${lost} packet(s) were won before the loss by users no surviving store knows: held in ${keys.lost(id)}, ` +
        'never issued again, refunded at settle unless the win is delivered after all; their winners may win again',
    );
  }
  if (queued > 0) {
    notes.push(
      `${queued} win(s) were still queued in RabbitMQ: gift-svc delivers them; one that contradicts the restored ` +
        'state shows in reconcile and is never merged silently',
    );
  }
  return notes;
}

/** Ready messages in the wins queue, for RestoreCampaign (one short connection a call: it is rare). */
export function winsQueueDepth(amqpUrl: string, queue: string): () => Promise<number> {
  return async () => {
    const conn = await connectAmqp(amqpUrl, 'grab-svc-restore-check');
    try {
      const ch = await conn.createChannel();
      ch.on('error', () => undefined); // a missing queue closes the channel; the call says so
      // No queue yet (no relay ever declared it): nothing can be queued.
      return await ch.checkQueue(queue).then(
        (q) => q.messageCount,
        (err: { code?: number }) => {
          if (err.code === 404) return 0;
          throw err;
        },
      );
    } finally {
      await conn.close().catch(() => undefined);
    }
  };
}

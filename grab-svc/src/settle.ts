/**
 * Settlement and reconciliation: the two places where Redis (claims) and MySQL (awards,
 * settlements) are held against each other and against the campaign's total.
 */
import { failedPrecondition, keys, poolId, type RedisClient } from '@redpacket/lib';
import { parkedDeadLetters, type Pool, type PoolConnection } from '@redpacket/db';
import { accountId, idempotencyKey, InsufficientFundsError, transferIn } from '@redpacket/ledger';
import type { Reconciliation, Settlement } from '@redpacket/proto';
import type { ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import { loadMeta, loadStats, type CampaignMeta } from './campaigns.js';

/** The ids of a campaign's sub-pools (just the campaign's own id without sub-pools). */
const poolIds = (m: CampaignMeta): string[] => Array.from({ length: m.subPools }, (_, p) => poolId(m.id, p));

/** Redis's clock: the one the grab script decides expiry by. */
async function redisNowMs(redis: RedisClient): Promise<number> {
  const [s, us] = await redis.time();
  return Number(s) * 1000 + Math.floor(Number(us) / 1000);
}

/**
 * The account a campaign created by an operator (AdminService.CreateCampaign) is funded from and
 * refunded to: the owner's operator budget, brought in with AccountService.Deposit.
 */
export const ownerAccount = (ownerId: string): string => accountId.operator(ownerId);

/** The idempotency key of a campaign's funding transfer (owner -> escrow), one per campaign. */
export const fundingKey = (campaignId: string): string => idempotencyKey('funding', campaignId);

/** What insertCampaignRow does beyond an operator's campaign (SendPacket's options). */
export interface CampaignRowOptions {
  /** The account the total is debited from; default ownerAccount(owner), the operator budget. */
  fundedFrom?: string;
  /**
   * Runs inside the transaction after the funding transfer, which holds the funder's account row
   * locked: a check made here (a sender's packets a day) is serialised per funder. Throwing
   * rolls everything back.
   */
  afterFunding?: (conn: PoolConnection) => Promise<void>;
}

/** The campaign's row was not written: a row with the same (owner, send_request_id) exists. */
export class DuplicateSendError extends Error {
  constructor(
    readonly ownerId: string,
    readonly requestId: string,
  ) {
    super(`${ownerId} already sent a packet with request_id ${requestId}`);
    this.name = 'DuplicateSendError';
  }
}

/**
 * Inserts the campaign's row, the record of truth in MySQL, with all RestoreCampaign needs to
 * rebuild the Redis state, and in the same transaction moves the total from the funder (the
 * owner's operator budget unless `o.fundedFrom` says otherwise) into escrow:<campaign>. Without
 * the funds FAILED_PRECONDITION and nothing is written; a repeat changes nothing (the row and the
 * transfer are both once per campaign). A sent packet (m.sendRequestId) whose (owner, request id)
 * is taken throws DuplicateSendError, nothing written. packet_seed makes every packet code
 * derivable by whoever reads the row: the same people who read the awards.
 */
export async function insertCampaignRow(pool: Pool, m: CampaignMeta, o: CampaignRowOptions = {}): Promise<void> {
  const el = m.eligibility;
  const from = o.fundedFrom ?? ownerAccount(m.ownerId);
  const conn = await pool.getConnection();
  try {
    // READ COMMITTED, as the ledger's own transactions: the owner's balance as last committed.
    await conn.query('SET TRANSACTION ISOLATION LEVEL READ COMMITTED');
    await conn.beginTransaction();
    const [row] = await conn.query<ResultSetHeader>(
      'INSERT INTO campaigns (campaign_id, name, owner_id, total_cents, packet_count, split, batches, ' +
        'batch_interval_ms, starts_at, expires_at, created_at, packet_seed, sub_pools, req_pre, max_risk, admit_ppm, ' +
        'send_request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ' +
        'ON DUPLICATE KEY UPDATE campaign_id = campaign_id',
      [
        m.id,
        m.name,
        m.ownerId,
        m.totalCents,
        m.count,
        m.split,
        m.batches,
        m.intervalMs,
        new Date(m.startMs),
        new Date(m.expiresMs),
        new Date(m.createdMs),
        m.packetSeed ?? null,
        m.subPools,
        el.requirePreOpened ? 1 : 0,
        el.maxRiskScore ?? null,
        el.admissionPpm ?? null,
        m.sendRequestId ?? null,
      ],
    );
    // A new campaign id never collides: no row written means (owner, send_request_id) did.
    if (m.sendRequestId !== undefined && row.affectedRows === 0) {
      throw new DuplicateSendError(m.ownerId, m.sendRequestId);
    }
    await transferIn(conn, {
      key: fundingKey(m.id),
      kind: 'funding',
      from,
      to: accountId.escrow(m.id),
      amountCents: BigInt(m.totalCents),
    });
    await o.afterFunding?.(conn);
    await conn.commit();
  } catch (err) {
    await conn.rollback().catch(() => undefined);
    if (err instanceof InsufficientFundsError) {
      throw failedPrecondition(
        o.fundedFrom
          ? `insufficient funds: ${err.accountId} holds ${err.balanceCents} cents, the packets need ` +
              `${err.neededCents}; nothing was sent`
          : `owner ${m.ownerId} has ${err.balanceCents} cents, the campaign needs ${err.neededCents} ` +
              `(deposit into ${err.accountId} first: redpacket ledger deposit)`,
      );
    }
    throw err;
  } finally {
    conn.release();
  }
}

/** Records the first close of a campaign on its MySQL row (a repeat keeps the first). */
export async function recordClose(pool: Pool, id: string, reason: string, atMs = Date.now()): Promise<void> {
  await pool.query('UPDATE campaigns SET closed_at = ?, close_reason = ? WHERE campaign_id = ? AND closed_at IS NULL', [
    new Date(atMs),
    reason,
    id,
  ]);
}

async function awardTotals(pool: Pool, id: string): Promise<{ n: number; cents: number }> {
  const [rows] = await pool.query<RowDataPacket[]>(
    'SELECT COUNT(*) AS n, COALESCE(SUM(amount_cents), 0) AS cents FROM awards WHERE campaign_id = ?',
    [id],
  );
  return { n: Number(rows[0]?.['n'] ?? 0), cents: Number(rows[0]?.['cents'] ?? 0) };
}

/** Packets a restore found won by nobody known (rp:{c}:lost): packet id -> amount. */
async function loadLost(redis: RedisClient, id: string): Promise<Map<string, number>> {
  const h = await redis.hgetall(keys.lost(id));
  return new Map(Object.entries(h).map(([pid, amount]) => [pid, Number(amount)]));
}

/** Awards of lost packets (delivered after the restore after all); nothing to read without any. */
async function lateLostAwards(redis: RedisClient, pool: Pool, id: string): Promise<{ n: number; cents: number }> {
  const lost = await loadLost(redis, id);
  if (lost.size === 0) return { n: 0, cents: 0 };
  const [rows] = await pool.query<RowDataPacket[]>('SELECT packet_id, amount_cents FROM awards WHERE campaign_id = ?', [
    id,
  ]);
  const late = rows.filter((r) => lost.has(String(r['packet_id'])));
  return { n: late.length, cents: late.reduce((s, r) => s + Number(r['amount_cents']), 0) };
}

async function loadSettlement(pool: Pool, id: string): Promise<Settlement | undefined> {
  const [rows] = await pool.query<RowDataPacket[]>('SELECT * FROM settlements WHERE campaign_id = ?', [id]);
  const r = rows[0];
  if (!r) return undefined;
  return {
    campaignId: id,
    ownerId: String(r['owner_id']),
    amountTotalCents: BigInt(r['amount_total_cents'] as string),
    amountAwardedCents: BigInt(r['amount_awarded_cents'] as string),
    packetsAwarded: Number(r['packets_awarded']),
    refundCents: BigInt(r['refund_cents'] as string),
    settledAt: r['settled_at'] as Date,
    alreadySettled: true,
  };
}

/** The idempotency key of a campaign's refund (escrow -> owner), one per campaign. */
export const refundKey = (campaignId: string): string => idempotencyKey('refund', campaignId);

/**
 * Moves the unclaimed remainder from escrow:<campaign> back to the account that funded it (as
 * the funding transfer says; the owner's operator budget for a campaign without one), inside the
 * settlement's transaction: escrow then holds 0 (every award already left it).
 */
async function refundEscrow(conn: PoolConnection, id: string, ownerId: string, cents: bigint): Promise<void> {
  const [funded] = await conn.query<RowDataPacket[]>('SELECT debit_account FROM transfers WHERE idempotency_key = ?', [
    fundingKey(id),
  ]);
  await transferIn(conn, {
    key: refundKey(id),
    kind: 'refund',
    from: accountId.escrow(id),
    to: String(funded[0]?.['debit_account'] ?? ownerAccount(ownerId)),
    amountCents: cents,
  });
}

/** The operator's command that credits a campaign's parked dead letters. */
export const redriveCommand = (id: string): string => `redpacket deadletters redrive --campaign ${id}`;

/** Packet ids named in a message, at most this many. */
const NAMED = 5;

/**
 * Refunds the unclaimed remainder to the owner, once. Needs the campaign closed or expired,
 * none of its wins parked as dead letters, and every win claimed in Redis credited in MySQL;
 * otherwise FAILED_PRECONDITION saying which. A second call returns the first settlement and
 * changes nothing.
 */
export async function settleCampaign(redis: RedisClient, pool: Pool, id: string): Promise<Settlement> {
  const meta = await loadMeta(redis, id);
  const earlier = await loadSettlement(pool, id);
  if (earlier) {
    await redis.hset(keys.meta(id), 'settled', '1');
    return earlier;
  }
  const now = await redisNowMs(redis);
  if (!meta.closed && now < meta.expiresMs) {
    throw failedPrecondition('campaign is still open: close it or wait until it expires');
  }
  // Closed or expired by Redis's clock, so no grab can win any more: these counts are final.
  const [stats, outboxes] = await Promise.all([
    loadStats(redis, id, meta.subPools),
    Promise.all(poolIds(meta).map((p) => redis.xlen(keys.outbox(p)))),
  ]);
  const outbox = outboxes.reduce((a, b) => a + b, 0);
  const claimed = Number(stats['claimed'] ?? 0);
  const claimedCents = Number(stats['claimed_cents'] ?? 0);
  // Before the in-flight check: a dead letter will not arrive by waiting, and settling without
  // it would refund a won packet to the owner. The operator re-drives it (compensation).
  const parked = await parkedDeadLetters(pool, id);
  if (parked.count > 0) {
    const named = parked.packetIds.slice(0, NAMED).join(', ') + (parked.packetIds.length > NAMED ? ', …' : '');
    throw failedPrecondition(
      `${parked.count} win(s) parked as dead letters (packets ${named}); credit them with ` +
        `\`${redriveCommand(id)}\`, then settle again`,
    );
  }
  const awarded = await awardTotals(pool, id);
  // A packet lost in a restore (see restore.ts) is in no claim; if its win is delivered after all
  // its award is real (and refunded no more), but it is not one of the claims to compare.
  const late = await lateLostAwards(redis, pool, id);
  const matched = { n: awarded.n - late.n, cents: awarded.cents - late.cents };
  if (matched.n < claimed) {
    throw failedPrecondition(
      `${claimed - matched.n} win(s) still in flight (${outbox} not yet relayed); settle again once they are ` +
        'credited (GiftService.GetDeliveryStats shows any dead-lettered)',
    );
  }
  if (matched.n !== claimed || matched.cents !== claimedCents) {
    throw failedPrecondition(
      `MySQL has ${matched.n} award(s) / ${matched.cents} cents, Redis ${claimed} / ${claimedCents}: run ReconcileCampaign`,
    );
  }
  const refund = meta.totalCents - awarded.cents;
  const conn = await pool.getConnection();
  let created = false;
  try {
    await conn.query('SET TRANSACTION ISOLATION LEVEL READ COMMITTED');
    await conn.beginTransaction();
    // A plain INSERT: a concurrent settle of the same campaign waits on this row's lock and then
    // fails with a duplicate key, so exactly one refunds. (ON DUPLICATE KEY UPDATE cannot tell:
    // with CLIENT_FOUND_ROWS an untouched duplicate counts one affected row, like a new one.)
    await conn.query<ResultSetHeader>(
      'INSERT INTO settlements (campaign_id, owner_id, amount_total_cents, amount_awarded_cents, packets_awarded, ' +
        'refund_cents) VALUES (?, ?, ?, ?, ?, ?)',
      [id, meta.ownerId, meta.totalCents, awarded.cents, awarded.n, refund],
    );
    if (refund > 0) await refundEscrow(conn, id, meta.ownerId, BigInt(refund));
    await conn.commit();
    created = true;
  } catch (err) {
    await conn.rollback().catch(() => undefined);
    if ((err as { code?: string }).code !== 'ER_DUP_ENTRY') throw err;
  } finally {
    conn.release();
  }
  await redis.hset(keys.meta(id), 'settled', '1');
  const s = await loadSettlement(pool, id);
  if (!s) throw new Error(`settlement of ${id} vanished after commit`);
  return { ...s, alreadySettled: !created };
}

interface Claim {
  userId: string;
  amount: number;
}

/** Every claim in the claims hashes of the campaign's pools, by packet id (HSCAN, never one huge reply). */
async function loadClaims(redis: RedisClient, m: CampaignMeta): Promise<Map<string, Claim>> {
  const out = new Map<string, Claim>();
  for (const p of poolIds(m)) await scanClaims(redis, p, out);
  return out;
}

async function scanClaims(redis: RedisClient, id: string, out: Map<string, Claim>): Promise<void> {
  let cursor = '0';
  do {
    const [next, flat] = await redis.hscan(keys.claims(id), cursor, 'COUNT', 5000);
    cursor = next;
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const [packetId, amount] = (flat[i + 1] as string).split('|');
      out.set(packetId ?? '', { userId: flat[i] as string, amount: Number(amount) });
    }
  } while (cursor !== '0');
}

/** Packets and cents still in the batch lists of every pool. */
async function remainingInRedis(redis: RedisClient, m: CampaignMeta): Promise<{ n: number; cents: number }> {
  let n = 0;
  let cents = 0;
  const CHUNK = 10_000;
  for (const p of poolIds(m)) {
    for (let b = 0; b < m.batches; b++) {
      for (let from = 0; ; from += CHUNK) {
        const items = await redis.lrange(keys.batch(p, b), from, from + CHUNK - 1);
        for (const item of items) cents += Number(item.slice(item.indexOf('|') + 1));
        n += items.length;
        if (items.length < CHUNK) break;
      }
    }
  }
  return { n, cents };
}

const CAP = 1000;

/** Redis claims vs MySQL awards vs the total: equal, or exactly which packets differ where. */
export async function reconcileCampaign(redis: RedisClient, pool: Pool, id: string): Promise<Reconciliation> {
  const meta = await loadMeta(redis, id);
  const [claims, remaining, stats, lost, [rows], settlement, parked] = await Promise.all([
    loadClaims(redis, meta),
    remainingInRedis(redis, meta),
    loadStats(redis, id, meta.subPools),
    loadLost(redis, id),
    pool.query<RowDataPacket[]>('SELECT packet_id, user_id, amount_cents FROM awards WHERE campaign_id = ?', [id]),
    loadSettlement(pool, id),
    parkedDeadLetters(pool, id),
  ]);
  const differences: string[] = [];
  const missing: string[] = [];
  const unknown: string[] = [];
  const mismatched: string[] = [];
  let claimedCents = 0;
  for (const c of claims.values()) claimedCents += c.amount;
  let deliveredCents = 0;
  const seen = new Set<string>();
  for (const r of rows) {
    const pid = String(r['packet_id']);
    const amount = Number(r['amount_cents']);
    deliveredCents += amount;
    seen.add(pid);
    const c = claims.get(pid);
    // a lost packet's win delivered after the restore: its winner is known after all
    if (!c && lost.has(pid)) continue;
    if (!c) unknown.push(pid);
    else if (c.userId !== String(r['user_id']) || c.amount !== amount) mismatched.push(pid);
  }
  // A claim missing from MySQL because its win is parked is not lost: it has a column of its own.
  const parkedIds = new Set(parked.packetIds);
  const dead: string[] = [];
  let deadCents = 0;
  for (const [pid, c] of claims) {
    if (seen.has(pid)) continue;
    if (parkedIds.has(pid)) {
      dead.push(pid);
      deadCents += c.amount;
    } else missing.push(pid);
  }

  // Even a parked letter whose packet is in MySQL after all keeps settle refusing: say so too.
  if (parked.count) {
    differences.push(
      `${parked.count} dead letter(s) parked (${dead.length} claimed packet(s), ${deadCents} cents, not in MySQL): ` +
        `credit them with \`${redriveCommand(id)}\``,
    );
  }
  if (missing.length) differences.push(`${missing.length} packet(s) claimed in Redis are missing from MySQL`);
  if (unknown.length) differences.push(`${unknown.length} packet(s) in MySQL were never claimed in Redis`);
  if (mismatched.length) differences.push(`${mismatched.length} packet(s) differ in user or amount`);
  let lostCents = 0;
  for (const a of lost.values()) lostCents += a;
  if (claims.size + remaining.n + lost.size !== meta.count) {
    differences.push(
      `Redis: ${claims.size} claimed + ${remaining.n} remaining + ${lost.size} lost != ${meta.count} packets`,
    );
  }
  if (claimedCents + remaining.cents + lostCents !== meta.totalCents) {
    differences.push(
      `Redis: ${claimedCents} claimed + ${remaining.cents} remaining + ${lostCents} lost != ${meta.totalCents} cents`,
    );
  }
  const statClaimed = Number(stats['claimed'] ?? 0);
  const statCents = Number(stats['claimed_cents'] ?? 0);
  if (statClaimed !== claims.size || statCents !== claimedCents) {
    differences.push(
      `Redis counters say ${statClaimed} / ${statCents} cents, claims hash ${claims.size} / ${claimedCents}`,
    );
  }
  if (settlement && settlement.amountAwardedCents + settlement.refundCents !== BigInt(meta.totalCents)) {
    differences.push(
      `settlement: ${settlement.amountAwardedCents} awarded + ${settlement.refundCents} refunded != ${meta.totalCents}`,
    );
  }
  if (settlement && settlement.amountAwardedCents !== BigInt(deliveredCents)) {
    differences.push(
      `settlement counted ${settlement.amountAwardedCents} cents awarded, MySQL now has ${deliveredCents}`,
    );
  }
  return {
    campaignId: id,
    consistent: differences.length === 0,
    packetsTotal: meta.count,
    packetsClaimedRedis: claims.size,
    packetsRemainingRedis: remaining.n,
    packetsDeliveredMysql: rows.length,
    amountTotalCents: BigInt(meta.totalCents),
    amountClaimedRedisCents: BigInt(claimedCents),
    amountRemainingRedisCents: BigInt(remaining.cents),
    amountDeliveredMysqlCents: BigInt(deliveredCents),
    missingInMysql: missing.slice(0, CAP),
    unknownInMysql: unknown.slice(0, CAP),
    mismatched: mismatched.slice(0, CAP),
    differences,
    deadLettered: dead.slice(0, CAP),
    packetsDeadLettered: dead.length,
    amountDeadLetteredCents: BigInt(deadCents),
    packetsLost: lost.size,
    amountLostCents: BigInt(lostCents),
  };
}

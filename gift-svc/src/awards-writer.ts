/** Crediting wins into MySQL: one transaction a batch, idempotent by the awards' unique keys. */
import type { Pool, PoolConnection } from '@redpacket/db';
import { accountId, idempotencyKey, MAX_BATCH, transferBatchIn, type TransferItem } from '@redpacket/ledger';
import type { WinEvent } from '@redpacket/wins';
import type { ResultSetHeader, RowDataPacket } from 'mysql2/promise';

/** MySQL error codes after which the same statement may well succeed on a fresh connection. */
const TRANSIENT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'PROTOCOL_CONNECTION_LOST',
  'PROTOCOL_SEQUENCE_TIMEOUT',
  'ER_CONNECTION_KILLED',
  'ER_QUERY_INTERRUPTED',
  'ER_SERVER_SHUTDOWN',
  'ER_LOCK_DEADLOCK',
  'ER_LOCK_WAIT_TIMEOUT',
  'ER_CON_COUNT_ERROR',
  'ER_TOO_MANY_USER_CONNECTIONS',
]);

/** True for failures of the database (retry the same batch), false for failures of the data. */
export function isTransient(err: unknown): boolean {
  const e = err as { code?: string; fatal?: boolean };
  return e.fatal === true || (e.code !== undefined && TRANSIENT_CODES.has(e.code));
}

/**
 * Writes the awards and their transfers (escrow:<campaign> -> user:<winner>) in one transaction
 * and returns how many awards were new. A win already credited (same packet id, or same
 * campaign and user) changes nothing; ON DUPLICATE KEY (rather than INSERT IGNORE) keeps every
 * other error an error. The transfers are derived from the award rows, keyed by packet id, so
 * the two can never disagree and a redelivery moves no money. An escrow short of the awards
 * (InsufficientFundsError) fails the whole batch: a win is never credited unpaid.
 */
export async function writeAwards(pool: Pool, wins: WinEvent[]): Promise<number> {
  if (wins.length === 0) return 0;
  const conn = await pool.getConnection();
  let broken = false;
  try {
    // READ COMMITTED: the ledger's reads see a concurrent writer's committed transfers (whose
    // award row this insert waited for) rather than an older snapshot.
    await conn.query('SET TRANSACTION ISOLATION LEVEL READ COMMITTED');
    await conn.beginTransaction();
    // Only for the statistics: a single row's insert does not say whether it was new (a locking
    // read, so a concurrent uncommitted insert of the same win is waited for, not missed).
    let existed: number | undefined;
    if (wins.length === 1) {
      const w = wins[0] as WinEvent;
      const [found] = await conn.query<RowDataPacket[]>(
        'SELECT COUNT(*) AS n FROM awards WHERE packet_id = ? OR (campaign_id = ? AND user_id = ?) FOR UPDATE',
        [w.packetId, w.campaignId, w.userId],
      );
      existed = Number(found[0]?.['n'] ?? 0) > 0 ? 1 : 0;
    }
    const rows = wins.map((w) => [
      w.packetId,
      w.campaignId,
      w.userId,
      w.amountCents.toString(),
      w.requestId,
      new Date(Number(w.wonAtMs)),
    ]);
    const [res] = await conn.query<ResultSetHeader>(
      'INSERT INTO awards (packet_id, campaign_id, user_id, amount_cents, request_id, won_at) VALUES ? ' +
        'ON DUPLICATE KEY UPDATE packet_id = packet_id',
      [rows],
    );
    const said = newRows(res, rows.length);
    // Without the server's count (a single row) only the locking read above can tell.
    await payAwards(conn, wins, said !== undefined ? said === rows.length : existed === 0);
    await conn.commit();
    return said ?? rows.length - (existed ?? 0);
  } catch (err) {
    broken = isTransient(err);
    if (!broken) await conn.rollback().catch(() => undefined);
    throw err;
  } finally {
    release(conn, broken);
  }
}

/** The idempotency key of an award's transfer: one per packet, whatever redelivers it. */
export const awardKey = (campaignId: string, packetId: string): string => idempotencyKey('award', campaignId, packetId);

/**
 * The transfers of these packets' award rows (as stored: a packet whose win lost to an earlier
 * award of the same user has no row and moves nothing), one ledger batch per campaign, so each
 * escrow is debited once per transaction; campaigns in id order, as the ledger locks accounts.
 */
async function payAwards(conn: PoolConnection, wins: WinEvent[], allNew: boolean): Promise<void> {
  // Every win inserted as it came (the common case): the rows are the wins, no need to read them.
  const awards = allNew
    ? wins.map((w) => ({ packetId: w.packetId, campaignId: w.campaignId, userId: w.userId, cents: w.amountCents }))
    : (
        await conn.query<RowDataPacket[]>(
          'SELECT packet_id, campaign_id, user_id, amount_cents FROM awards WHERE packet_id IN (?)',
          [wins.map((w) => w.packetId)],
        )
      )[0].map((a) => ({
        packetId: String(a['packet_id']),
        campaignId: String(a['campaign_id']),
        userId: String(a['user_id']),
        cents: BigInt(a['amount_cents'] as string),
      }));
  const byCampaign = new Map<string, TransferItem[]>();
  for (const a of awards) {
    const items = byCampaign.get(a.campaignId) ?? [];
    items.push({ key: awardKey(a.campaignId, a.packetId), to: accountId.user(a.userId), amountCents: a.cents });
    byCampaign.set(a.campaignId, items);
  }
  for (const [campaignId, items] of [...byCampaign].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    for (let i = 0; i < items.length; i += MAX_BATCH) {
      await transferBatchIn(conn, {
        from: accountId.escrow(campaignId),
        kind: 'award',
        items: items.slice(i, i + MAX_BATCH),
        // An award row new in this transaction has had no transfer: its key is written with it.
        allNew,
      });
    }
  }
}

/**
 * Rows really inserted by an INSERT ... ON DUPLICATE KEY UPDATE of `sent` rows, or undefined
 * when the server did not say. affectedRows cannot tell (with CLIENT_FOUND_ROWS, mysql2's
 * default, an untouched duplicate counts 1 like a new row), but a multi-row insert's info line
 * can: "Records: 200  Duplicates: 74  Warnings: 0". A single-row insert has no such line.
 */
export function newRows(res: ResultSetHeader, sent: number): number | undefined {
  const m = /Duplicates:\s*(\d+)/.exec(res.info ?? '');
  return m ? sent - Number(m[1]) : undefined;
}

/** A connection that saw a connection-level failure is destroyed, not returned to the pool. */
export function release(conn: PoolConnection, broken: boolean): void {
  if (broken) conn.destroy();
  else conn.release();
}

export interface DeadLetter {
  campaignId: string;
  packetId: string;
  /** The rest of the win, when the body decoded (empty / 0n when it did not). */
  userId?: string;
  amountCents?: bigint;
  requestId?: string;
  traceId?: string;
  reason: string;
  attempts: number;
  body: Buffer;
}

/**
 * Records a dead-lettered message: the record of truth that settle refuses on and
 * RedriveDeadLetters credits from (the body kept whole, so the win can be written again).
 */
export async function recordDeadLetter(pool: Pool, d: DeadLetter): Promise<void> {
  await pool.query(
    'INSERT INTO dead_letters (campaign_id, packet_id, user_id, amount_cents, request_id, trace_id, reason, ' +
      'attempts, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
    [
      d.campaignId.slice(0, 64),
      d.packetId.slice(0, 32),
      (d.userId ?? '').slice(0, 128),
      (d.amountCents ?? 0n).toString(),
      (d.requestId ?? '').slice(0, 128),
      (d.traceId ?? '').slice(0, 128),
      d.reason.slice(0, 512),
      d.attempts,
      d.body.subarray(0, 4096),
    ],
  );
}

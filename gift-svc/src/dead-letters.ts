/**
 * Dead letters behind GiftService: listing the parked wins and re-driving them (compensation).
 *
 * The MySQL row in `dead_letters` is the record of truth: settle refuses while a campaign has
 * one parked, and a re-drive credits from the body kept in the row, then stamps redriven_at.
 * The copy RabbitMQ holds in the dead-letter queue (gift.wins.dead) is never read back nor
 * removed by gift-svc: it has no consumer, stays as the broker's evidence of what was rejected,
 * and an operator may purge it once `redpacket deadletters list` shows nothing parked.
 * Re-publishing it into the wins queue instead would work (the writer is idempotent) but would
 * leave nothing to say which ones were re-driven, and a poison body would just come back.
 */
import { parkedDeadLetters, type Pool } from '@redpacket/db';
import { invalidArgument } from '@redpacket/lib';
import {
  WinEvent,
  type DeadLetter,
  type ListDeadLettersResponse,
  type RedriveDeadLettersResponse,
} from '@redpacket/proto';
import { decodeWin } from '@redpacket/wins';
import type { ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import { writeAwards } from './awards-writer.js';
import { checkCampaignId, nextToken, page } from './awards.js';

/** The batch writer re-drives go through: the consumer's, so a win is credited once either way. */
export type WinWriter = (pool: Pool, wins: WinEvent[]) => Promise<number>;

const COLUMNS =
  'id, campaign_id, packet_id, user_id, amount_cents, request_id, trace_id, reason, attempts, body, created_at, redriven_at';

/** Ids given to RedriveDeadLetters at once, at most. */
const MAX_IDS = 1000;
/** Parked rows read (and re-driven) per round trip when re-driving all of them. */
const CHUNK = 200;

function toDeadLetter(r: RowDataPacket): DeadLetter {
  const d: DeadLetter = {
    deadLetterId: String(r['id']),
    campaignId: String(r['campaign_id']),
    packetId: String(r['packet_id']),
    userId: String(r['user_id']),
    amountCents: BigInt(r['amount_cents'] as string),
    reason: String(r['reason']),
    attempts: Number(r['attempts']),
    deadLetteredAt: r['created_at'] as Date,
    redrivenAt: (r['redriven_at'] as Date | null) ?? undefined,
    requestId: String(r['request_id']),
    traceId: String(r['trace_id']),
  };
  if (d.userId !== '') return d;
  // Recorded before the columns existed, or not a valid win: show what the body says, if anything.
  try {
    const w = WinEvent.decode(r['body'] as Buffer);
    return { ...d, userId: w.userId, amountCents: w.amountCents, requestId: w.requestId, traceId: w.traceId };
  } catch {
    return d;
  }
}

const optionalCampaign = (id: string): string | undefined => (id === '' ? undefined : checkCampaignId(id));

/** Parked dead letters (and re-driven ones when asked), oldest first, of one campaign or all. */
export async function listDeadLetters(
  pool: Pool,
  req: { campaignId: string; pageSize: number; pageToken: string; includeRedriven: boolean },
): Promise<ListDeadLettersResponse> {
  const campaignId = optionalCampaign(req.campaignId);
  const { size, offset } = page(req.pageSize, req.pageToken);
  const conds = [campaignId === undefined ? '' : 'campaign_id = ?', req.includeRedriven ? '' : 'redriven_at IS NULL'];
  const where = conds.filter(Boolean).join(' AND ') || 'TRUE';
  const args = campaignId === undefined ? [] : [campaignId];
  const [[count], [rows], parked] = await Promise.all([
    pool.query<RowDataPacket[]>(`SELECT COUNT(*) AS n FROM dead_letters WHERE ${where}`, args),
    pool.query<RowDataPacket[]>(`SELECT ${COLUMNS} FROM dead_letters WHERE ${where} ORDER BY id LIMIT ? OFFSET ?`, [
      ...args,
      size,
      offset,
    ]),
    parkedDeadLetters(pool, campaignId),
  ]);
  return {
    deadLetters: rows.map(toDeadLetter),
    nextPageToken: nextToken(offset, size, Number(count[0]?.['n'] ?? 0)),
    parkedCount: BigInt(parked.count),
  };
}

function checkIds(ids: string[]): string[] {
  if (ids.length > MAX_IDS) throw invalidArgument('dead_letter_ids', `at most ${MAX_IDS} at once`);
  for (const id of ids) {
    if (!/^[1-9]\d{0,17}$/.test(id)) throw invalidArgument('dead_letter_ids', `"${id.slice(0, 40)}" is not an id`);
  }
  return [...new Set(ids)];
}

interface Tally {
  redriven: number;
  credited: number;
  failed: number;
  errors: string[];
}

/**
 * Credits parked dead letters again through the consumer's writer and marks each re-driven;
 * one that cannot be decoded or credited stays parked and gets a line in `errors`. Running it
 * again credits nothing again: the writer is idempotent by packet id and a marked row is
 * never picked up. Named ids that do not exist, or are not parked, are reported, not fatal.
 */
export async function redriveDeadLetters(
  pool: Pool,
  req: { campaignId: string; deadLetterIds: string[] },
  write: WinWriter = writeAwards,
): Promise<RedriveDeadLettersResponse> {
  const campaignId = optionalCampaign(req.campaignId);
  const ids = checkIds(req.deadLetterIds);
  const t: Tally = { redriven: 0, credited: 0, failed: 0, errors: [] };
  const inCampaign = campaignId === undefined ? '' : ' AND campaign_id = ?';
  const campaignArgs = campaignId === undefined ? [] : [campaignId];
  if (ids.length > 0) {
    const [rows] = await pool.query<RowDataPacket[]>(
      `SELECT ${COLUMNS} FROM dead_letters WHERE id IN (?)${inCampaign} ORDER BY id`,
      [ids, ...campaignArgs],
    );
    const found = new Map(rows.map((r) => [String(r['id']), r]));
    for (const id of ids) {
      const r = found.get(id);
      if (!r) t.errors.push(`dead letter ${id}: not found${campaignId ? ` in campaign ${campaignId}` : ''}`);
      else if (r['redriven_at']) t.errors.push(`dead letter ${id}: already re-driven; nothing to do`);
      else await redriveOne(pool, write, r, t);
    }
  } else {
    for (let after = 0; ;) {
      const [rows] = await pool.query<RowDataPacket[]>(
        `SELECT ${COLUMNS} FROM dead_letters WHERE redriven_at IS NULL AND id > ?${inCampaign} ORDER BY id LIMIT ?`,
        [after, ...campaignArgs, CHUNK],
      );
      for (const r of rows) await redriveOne(pool, write, r, t);
      const last = rows[rows.length - 1];
      if (!last || rows.length < CHUNK) break;
      after = Number(last['id']);
    }
  }
  return { redriven: BigInt(t.redriven), credited: BigInt(t.credited), failed: BigInt(t.failed), errors: t.errors };
}

async function redriveOne(pool: Pool, write: WinWriter, r: RowDataPacket, t: Tally): Promise<void> {
  const d = toDeadLetter(r);
  const label = `dead letter ${d.deadLetterId} (packet ${d.packetId || '?'})`;
  const park = (why: string): void => {
    t.failed++;
    t.errors.push(`${label}: ${why}`);
  };
  let win: WinEvent;
  try {
    win = decodeWin(r['body'] as Buffer);
  } catch (err) {
    return park(`cannot be decoded (${(err as Error).message}); it stays parked`);
  }
  if (!(await credited(pool, win.packetId))) {
    // A refund already paid out what no award held: crediting now would pay this packet twice.
    const [settled] = await pool.query<RowDataPacket[]>('SELECT 1 FROM settlements WHERE campaign_id = ?', [
      win.campaignId,
    ]);
    if (settled.length > 0) return park(`campaign ${win.campaignId} is settled already; it stays parked`);
    try {
      t.credited += await write(pool, [win]);
    } catch (err) {
      return park(`write failed again (${(err as Error).message}); it stays parked`);
    }
    // The writer also takes a win as done when the user already holds another packet of the
    // campaign: that one is not credited, so it is not re-driven either.
    if (!(await credited(pool, win.packetId))) {
      return park(`user ${win.userId} already holds another award of campaign ${win.campaignId}; it stays parked`);
    }
  }
  const [res] = await pool.query<ResultSetHeader>(
    'UPDATE dead_letters SET redriven_at = CURRENT_TIMESTAMP(3) WHERE id = ? AND redriven_at IS NULL',
    [d.deadLetterId],
  );
  // 0 rows: a concurrent re-drive marked it first and counted it.
  if (res.affectedRows === 1) t.redriven++;
}

async function credited(pool: Pool, packetId: string): Promise<boolean> {
  const [rows] = await pool.query<RowDataPacket[]>('SELECT 1 FROM awards WHERE packet_id = ?', [packetId]);
  return rows.length > 0;
}

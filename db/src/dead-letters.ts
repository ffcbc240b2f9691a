/** Parked dead letters: wins gift-svc could not credit and no re-drive has credited yet. */
import type { Pool, RowDataPacket } from 'mysql2/promise';

export interface Parked {
  /** Dead letters not yet re-driven (a packet dead-lettered twice counts twice). */
  count: number;
  /** Their distinct packet ids, oldest dead letter first ('' for a body that did not decode). */
  packetIds: string[];
}

/**
 * A campaign's parked dead letters, or every campaign's when `campaignId` is undefined. The
 * MySQL row is the record of truth for a dead letter; the copy in RabbitMQ's dead-letter
 * queue is never read back.
 */
export async function parkedDeadLetters(pool: Pool, campaignId?: string): Promise<Parked> {
  const where = campaignId === undefined ? 'redriven_at IS NULL' : 'campaign_id = ? AND redriven_at IS NULL';
  const args = campaignId === undefined ? [] : [campaignId];
  const [rows] = await pool.query<RowDataPacket[]>(
    `SELECT packet_id, COUNT(*) AS n FROM dead_letters WHERE ${where} GROUP BY packet_id ORDER BY MIN(id)`,
    args,
  );
  let count = 0;
  for (const r of rows) count += Number(r['n']);
  return { count, packetIds: rows.map((r) => String(r['packet_id'])) };
}

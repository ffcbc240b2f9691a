/** Award queries behind GiftService: a user's awards, a campaign's winners, delivery stats. */
import { CAMPAIGN_ID_PATTERN, invalidArgument, keys, type RedisClient } from '@redpacket/lib';
import { parkedDeadLetters, type Pool } from '@redpacket/db';
import type { Award, DeliveryStats, ListAwardsResponse, ListCampaignWinnersResponse, Winner } from '@redpacket/proto';
import type { RowDataPacket } from 'mysql2/promise';

const AWARD_COLUMNS = 'packet_id, campaign_id, user_id, amount_cents, won_at, credited_at';

function toAward(r: RowDataPacket): Award {
  return {
    packetId: String(r['packet_id']),
    campaignId: String(r['campaign_id']),
    userId: String(r['user_id']),
    amountCents: BigInt(r['amount_cents'] as string),
    wonAt: r['won_at'] as Date,
    creditedAt: r['credited_at'] as Date,
  };
}

export function checkCampaignId(id: string, field = 'campaign_id'): string {
  if (!CAMPAIGN_ID_PATTERN.test(id)) throw invalidArgument(field, 'must be 1-64 characters of [A-Za-z0-9_-]');
  return id;
}

/** Page size (0 = 50, at most 500) and offset from an opaque page token. */
export function page(pageSize: number, pageToken: string): { size: number; offset: number } {
  if (!Number.isInteger(pageSize) || pageSize < 0 || pageSize > 500)
    throw invalidArgument('page_size', 'must be 0-500');
  if (pageToken !== '' && !/^\d{1,9}$/.test(pageToken)) throw invalidArgument('page_token', 'malformed');
  return { size: pageSize || 50, offset: pageToken === '' ? 0 : Number(pageToken) };
}

/** The token of the page after `offset`, or empty on the last page. */
export const nextToken = (offset: number, size: number, total: number): string =>
  offset + size < total ? String(offset + size) : '';

/** The user's awards, newest first, optionally of one campaign. */
export async function listMyAwards(
  pool: Pool,
  userId: string,
  req: { pageSize: number; pageToken: string; campaignId: string },
): Promise<ListAwardsResponse> {
  const { size, offset } = page(req.pageSize, req.pageToken);
  const where = req.campaignId ? 'user_id = ? AND campaign_id = ?' : 'user_id = ?';
  const args = req.campaignId ? [userId, checkCampaignId(req.campaignId)] : [userId];
  const [[count], [rows]] = await Promise.all([
    pool.query<RowDataPacket[]>(`SELECT COUNT(*) AS n FROM awards WHERE ${where}`, args),
    pool.query<RowDataPacket[]>(
      `SELECT ${AWARD_COLUMNS} FROM awards WHERE ${where} ORDER BY won_at DESC, packet_id LIMIT ? OFFSET ?`,
      [...args, size, offset],
    ),
  ]);
  const total = Number(count[0]?.['n'] ?? 0);
  return {
    awards: rows.map(toAward),
    nextPageToken: nextToken(offset, size, total),
    bestLuck: undefined,
    totalCount: BigInt(total),
  };
}

/** A campaign's winners in the order they won, and its best-luck winner (largest, earliest). */
export async function listCampaignAwards(
  pool: Pool,
  req: { campaignId: string; pageSize: number; pageToken: string },
): Promise<ListAwardsResponse> {
  const campaignId = checkCampaignId(req.campaignId);
  const { size, offset } = page(req.pageSize, req.pageToken);
  const [[count], [rows], [best]] = await Promise.all([
    pool.query<RowDataPacket[]>('SELECT COUNT(*) AS n FROM awards WHERE campaign_id = ?', [campaignId]),
    pool.query<RowDataPacket[]>(
      `SELECT ${AWARD_COLUMNS} FROM awards WHERE campaign_id = ? ORDER BY won_at, packet_id LIMIT ? OFFSET ?`,
      [campaignId, size, offset],
    ),
    pool.query<RowDataPacket[]>(
      `SELECT ${AWARD_COLUMNS} FROM awards WHERE campaign_id = ? ORDER BY amount_cents DESC, won_at, packet_id LIMIT 1`,
      [campaignId],
    ),
  ]);
  const total = Number(count[0]?.['n'] ?? 0);
  return {
    awards: rows.map(toAward),
    nextPageToken: nextToken(offset, size, total),
    bestLuck: best[0] ? toAward(best[0]) : undefined,
    totalCount: BigInt(total),
  };
}

/**
 * A user id as anyone may see it: "***" in place of all but the first and last character, always
 * three, so neither the length nor a short id shows. Ids of 3-4 characters keep only the first
 * (first and last would be half the id or more); 1-2 characters keep nothing.
 */
export function maskUserId(userId: string): string {
  const chars = [...userId];
  if (chars.length <= 2) return '***';
  if (chars.length <= 4) return `${chars[0]}***`;
  return `${chars[0]}***${chars[chars.length - 1]}`;
}

/** An award as the public winners list shows it: no user id, no redeemable packet code. */
const toWinner = (a: Award): Winner => ({
  maskedUserId: maskUserId(a.userId),
  amountCents: a.amountCents,
  wonAt: a.wonAt,
});

/**
 * A campaign's winners for any user: listCampaignAwards' page, masked. An unknown campaign has no
 * award rows, so it lists as empty, like a campaign nobody has won yet (gift-svc cannot tell them
 * apart without asking grab-svc, and a user learns nothing from the difference).
 */
export async function listCampaignWinners(
  pool: Pool,
  req: { campaignId: string; pageSize: number; pageToken: string },
): Promise<ListCampaignWinnersResponse> {
  const res = await listCampaignAwards(pool, req);
  return {
    winners: res.awards.map(toWinner),
    nextPageToken: res.nextPageToken,
    bestLuck: res.bestLuck && toWinner(res.bestLuck),
    totalCount: res.totalCount,
  };
}

/**
 * Delivered and dead-lettered (parked, not yet re-driven) from MySQL; in flight = claimed in
 * Redis minus delivered minus parked: a dead letter waits for an operator, not for delivery.
 */
export async function deliveryStats(
  pool: Pool,
  redis: RedisClient | undefined,
  campaignIdIn: string,
): Promise<DeliveryStats> {
  const campaignId = checkCampaignId(campaignIdIn);
  const [[agg], dead, claimed] = await Promise.all([
    pool.query<RowDataPacket[]>(
      'SELECT COUNT(*) AS n, COALESCE(SUM(amount_cents), 0) AS cents, MAX(credited_at) AS last FROM awards WHERE campaign_id = ?',
      [campaignId],
    ),
    parkedDeadLetters(pool, campaignId),
    redis ? redis.hget(keys.stats(campaignId), 'claimed') : Promise.resolve(null),
  ]);
  const delivered = Number(agg[0]?.['n'] ?? 0);
  const parked = dead.count;
  return {
    campaignId,
    delivered: BigInt(delivered),
    deliveredCents: BigInt(String(agg[0]?.['cents'] ?? '0')),
    inFlight: BigInt(Math.max(0, Number(claimed ?? 0) - delivered - parked)),
    deadLettered: BigInt(parked),
    lastDeliveredAt: (agg[0]?.['last'] as Date | null) ?? undefined,
  };
}

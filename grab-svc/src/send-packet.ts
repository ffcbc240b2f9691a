/**
 * SendPacket: a user sends a red packet from their own balance (WeChat, Weibo). It is a campaign
 * owned by the caller, funded from user:<caller>, open now in one batch until expiry, when the
 * settle timer refunds what nobody grabbed back to the sender (settle refunds to the funder).
 */
import { status } from '@grpc/grpc-js';
import type { Pool, PoolConnection } from '@redpacket/db';
import { accountId } from '@redpacket/ledger';
import { failedPrecondition, invalidArgument, isValidRequestId, ServiceError, type RedisClient } from '@redpacket/lib';
import type { Campaign, SendPacketRequest } from '@redpacket/proto';
import type { RowDataPacket } from 'mysql2/promise';
import { getCampaign, newCampaignId, validateCreate, writeCampaign, type CampaignMeta } from './campaigns.js';
import { restoreCampaign } from './restore.js';
import { DuplicateSendError, insertCampaignRow } from './settle.js';

/** Per-user limits of SendPacket (grab-svc's SEND_MAX_* variables). */
export interface SendLimits {
  /** Packets one send may split into. */
  maxPackets: number;
  /** Cents one send may hold. */
  maxTotalCents: number;
  /** Sends one user may make in any 24 hours. */
  maxPerDay: number;
}

/** WeChat's limits: 200 packets, ¥20,000 a send; 100 sends a day. */
export const DEFAULT_SEND_LIMITS: SendLimits = { maxPackets: 200, maxTotalCents: 2_000_000, maxPerDay: 100 };
/** A packet nobody opens goes back to the sender after this long (WeChat: 24 h). */
export const DEFAULT_SEND_EXPIRY_SECONDS = 24 * 3600;
/** The longest a sent packet may stay open. */
export const MAX_SEND_EXPIRY_SECONDS = 7 * 24 * 3600;
/** The greeting when the sender writes none. */
export const DEFAULT_GREETING = 'Best wishes';
const DAY_MS = 24 * 3600 * 1000;

export interface SendPacketDeps {
  redis: RedisClient;
  pool: Pool;
  limits: SendLimits;
}

/** Validates the request: INVALID_ARGUMENT naming the field, FAILED_PRECONDITION over a limit. */
function validateSend(req: SendPacketRequest, senderId: string, limits: SendLimits, nowMs: number): CampaignMeta {
  if (!isValidRequestId(req.requestId)) {
    throw invalidArgument(
      'request_id',
      'is required: 1-128 printable ASCII characters without spaces (a repeat returns the first packet)',
    );
  }
  const greeting = req.greeting.trim();
  if (greeting.length > 128) throw invalidArgument('greeting', 'at most 128 characters');
  const seconds = req.expiresInSeconds === 0n ? BigInt(DEFAULT_SEND_EXPIRY_SECONDS) : req.expiresInSeconds;
  if (seconds < 1n || seconds > BigInt(MAX_SEND_EXPIRY_SECONDS)) {
    throw invalidArgument('expires_in_seconds', `must be between 1 and ${MAX_SEND_EXPIRY_SECONDS} (0 means 24 h)`);
  }
  // The shape first (INVALID_ARGUMENT), then the per-user limits (FAILED_PRECONDITION).
  const meta = validateCreate(
    {
      name: greeting || DEFAULT_GREETING,
      totalCents: req.totalCents,
      packetCount: req.packetCount,
      split: req.split,
      batches: 1,
      batchIntervalMs: 0n,
      startsAt: undefined,
      expiresAt: new Date(nowMs + Number(seconds) * 1000),
      ownerId: senderId,
      eligibility: undefined,
      subPools: undefined,
    },
    nowMs,
  );
  if (meta.count > limits.maxPackets) {
    throw failedPrecondition(`packet_count ${meta.count} is over the limit of ${limits.maxPackets} packets a send`);
  }
  if (meta.totalCents > limits.maxTotalCents) {
    throw failedPrecondition(
      `total_cents ${meta.totalCents} is over the limit of ${limits.maxTotalCents} cents a send`,
    );
  }
  return { ...meta, id: newCampaignId(), sendRequestId: req.requestId };
}

/** The campaign an earlier send of (sender, request id) created, if any. */
async function earlierSend(pool: Pool, senderId: string, requestId: string): Promise<string | undefined> {
  const [rows] = await pool.query<RowDataPacket[]>(
    'SELECT campaign_id FROM campaigns WHERE owner_id = ? AND send_request_id = ?',
    [senderId, requestId],
  );
  return rows[0] ? String(rows[0]['campaign_id']) : undefined;
}

/**
 * The campaign of an earlier send. Its row committed but its Redis state may not have been
 * written (grab-svc died in between, or Redis lost it): rebuilt from the row then (RestoreCampaign
 * does exactly that), so the repeat the sender's client makes is what completes the send.
 */
async function answerEarlier(d: SendPacketDeps, id: string): Promise<Campaign> {
  try {
    return await getCampaign(d.redis, id);
  } catch (err) {
    if (!(err instanceof ServiceError && err.code === status.NOT_FOUND)) throw err;
    await restoreCampaign(d.redis, d.pool, id);
    return getCampaign(d.redis, id);
  }
}

/** RESOURCE_EXHAUSTED once the sender's sends of the last 24 h (this one included) pass the limit. */
async function checkSendsToday(conn: PoolConnection, senderId: string, limit: number, nowMs: number): Promise<void> {
  const [rows] = await conn.query<RowDataPacket[]>(
    'SELECT COUNT(*) AS n FROM campaigns WHERE owner_id = ? AND send_request_id IS NOT NULL AND created_at > ?',
    [senderId, new Date(nowMs - DAY_MS)],
  );
  if (Number(rows[0]?.['n'] ?? 0) > limit) {
    throw new ServiceError(
      status.RESOURCE_EXHAUSTED,
      `${senderId} has sent ${limit} packets in the last 24 hours, the most allowed; nothing was sent`,
    );
  }
}

/**
 * Creates (once per sender and request id) the campaign of a sent packet and answers it. The row,
 * the funding transfer user:<sender> -> escrow and the day's count are one MySQL transaction,
 * before anything reaches Redis: a short balance or a passed limit writes nothing anywhere.
 */
export async function sendPacket(
  d: SendPacketDeps,
  senderId: string,
  req: SendPacketRequest,
  onCreated?: (campaignId: string) => void,
): Promise<{ campaign: Campaign; created: boolean }> {
  const nowMs = Date.now();
  const meta = validateSend(req, senderId, d.limits, nowMs);
  const earlier = await earlierSend(d.pool, senderId, req.requestId);
  if (earlier) return { campaign: await answerEarlier(d, earlier), created: false };
  try {
    await insertCampaignRow(d.pool, meta, {
      fundedFrom: accountId.user(senderId),
      afterFunding: (conn) => checkSendsToday(conn, senderId, d.limits.maxPerDay, nowMs),
    });
  } catch (err) {
    // The same send, concurrently: its row was committed first, and it answers for both.
    if (!(err instanceof DuplicateSendError)) throw err;
    const first = await earlierSend(d.pool, senderId, req.requestId);
    if (!first) throw err;
    return { campaign: await answerEarlier(d, first), created: false };
  }
  await writeCampaign(d.redis, meta);
  onCreated?.(meta.id);
  return { campaign: await getCampaign(d.redis, meta.id), created: true };
}

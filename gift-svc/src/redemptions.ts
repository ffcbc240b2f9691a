/**
 * RedeemPacket: a merchant redeems a packet code once. The redemption row (unique on the packet)
 * and the ledger transfer user:<winner> -> merchant:<merchant> are one transaction, so a code is
 * paid for exactly once however many merchants present it at the same moment.
 */
import type { Pool, PoolConnection } from '@redpacket/db';
import { accountId, idempotencyKey, InsufficientFundsError, transferIn } from '@redpacket/ledger';
import {
  checkSpendingAllowed,
  failedPrecondition,
  invalidArgument,
  isValidRequestId,
  notFound,
  ServiceError,
  type Switches,
} from '@redpacket/lib';
import type { RedeemPacketRequest, RedeemPacketResponse } from '@redpacket/proto';
import type { RowDataPacket } from 'mysql2/promise';

/** Packet codes as grab-svc issues them are 16 base64url characters; the column holds 32. */
const PACKET_ID = /^[A-Za-z0-9_-]{1,32}$/;
const ER_DUP_ENTRY = 1062;
const ER_LOCK_DEADLOCK = 1213;
/** Attempts when a concurrent redemption of the same code (or a deadlock) made ours roll back. */
const ATTEMPTS = 5;

/** The ledger key of a code's redemption: one per packet, whoever redeems it. */
export const redemptionKey = (packetId: string): string => idempotencyKey('redemption', packetId);

function checkRequest(req: RedeemPacketRequest): void {
  if (!PACKET_ID.test(req.packetId)) {
    throw invalidArgument('packet_id', 'must be the packet code: 1-32 characters of [A-Za-z0-9_-]');
  }
  if (!isValidRequestId(req.requestId)) {
    throw invalidArgument(
      'request_id',
      'is required: 1-128 printable ASCII characters without spaces (a repeat returns the first answer)',
    );
  }
}

async function selectRedemption(conn: Pool | PoolConnection, packetId: string): Promise<RowDataPacket | undefined> {
  const [rows] = await conn.query<RowDataPacket[]>('SELECT * FROM redemptions WHERE packet_id = ?', [packetId]);
  return rows[0];
}

/** The answer for a stored redemption; `already` unless it is this merchant's request repeated. */
function toResponse(r: RowDataPacket, merchantId: string, requestId: string): RedeemPacketResponse {
  const mine = String(r['merchant_id']) === merchantId && String(r['request_id']) === requestId;
  return {
    packetId: String(r['packet_id']),
    userId: String(r['user_id']),
    amountCents: BigInt(r['amount_cents'] as string | number),
    redeemedAt: r['redeemed_at'] as Date,
    alreadyRedeemed: !mine,
    merchantId: String(r['merchant_id']),
  };
}

/** Why a code with no award row cannot be redeemed: parked (FAILED_PRECONDITION) or unknown (NOT_FOUND). */
async function noAward(pool: Pool, packetId: string): Promise<ServiceError> {
  const [parked] = await pool.query<RowDataPacket[]>(
    'SELECT 1 FROM dead_letters WHERE packet_id = ? AND redriven_at IS NULL LIMIT 1',
    [packetId],
  );
  if (parked.length > 0) {
    return failedPrecondition(
      `packet ${packetId} was won but its win is not yet credited (parked for an operator's re-drive); ` +
        'nothing moved, try again once it is credited',
    );
  }
  return notFound(`packet code ${packetId} (unknown, or its win is not yet credited)`);
}

/**
 * Redeems `req.packetId` for `merchantId`: the award's amount moves from the winner to
 * merchant:<merchantId>, once. A code already redeemed answers the first redemption with
 * already_redeemed (false only for the same merchant's same request_id) and moves nothing.
 */
export async function redeemPacket(
  pool: Pool,
  switches: Switches | undefined,
  merchantId: string,
  req: RedeemPacketRequest,
): Promise<RedeemPacketResponse> {
  checkRequest(req);
  checkSpendingAllowed(switches);
  for (let attempt = 1; ; attempt++) {
    const earlier = await selectRedemption(pool, req.packetId);
    if (earlier) return toResponse(earlier, merchantId, req.requestId);
    const [awards] = await pool.query<RowDataPacket[]>('SELECT user_id, amount_cents FROM awards WHERE packet_id = ?', [
      req.packetId,
    ]);
    const award = awards[0];
    if (!award) throw await noAward(pool, req.packetId);
    try {
      return await redeemOnce(pool, merchantId, req, String(award['user_id']), BigInt(award['amount_cents']));
    } catch (err) {
      const errno = (err as { errno?: number }).errno;
      // Another merchant's redemption of this code committed first: the next pass answers it.
      if (attempt < ATTEMPTS && (errno === ER_DUP_ENTRY || errno === ER_LOCK_DEADLOCK)) continue;
      throw err;
    }
  }
}

async function redeemOnce(
  pool: Pool,
  merchantId: string,
  req: RedeemPacketRequest,
  userId: string,
  amountCents: bigint,
): Promise<RedeemPacketResponse> {
  const conn = await pool.getConnection();
  try {
    // READ COMMITTED, as the ledger's own transactions (no gap locks between neighbouring codes).
    await conn.query('SET TRANSACTION ISOLATION LEVEL READ COMMITTED');
    await conn.beginTransaction();
    // First: a concurrent redemption of the same code waits here on the key and then fails.
    await conn.query(
      'INSERT INTO redemptions (packet_id, merchant_id, user_id, amount_cents, request_id) VALUES (?, ?, ?, ?, ?)',
      [req.packetId, merchantId, userId, amountCents, req.requestId],
    );
    await transferIn(conn, {
      key: redemptionKey(req.packetId),
      kind: 'redemption',
      from: accountId.user(userId),
      to: accountId.merchant(merchantId),
      amountCents,
      note: `packet ${req.packetId}`,
    });
    const row = await selectRedemption(conn, req.packetId);
    await conn.commit();
    return toResponse(row!, merchantId, req.requestId);
  } catch (err) {
    await conn.rollback().catch(() => undefined);
    if (err instanceof InsufficientFundsError) {
      throw failedPrecondition(
        `the winner's balance (${err.accountId}) holds ${err.balanceCents} cents, the packet is ${err.neededCents}: ` +
          'already spent or withdrawn; nothing moved',
      );
    }
    throw err;
  } finally {
    conn.release();
  }
}

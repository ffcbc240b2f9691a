/** One-time login codes: random, stored only as a SHA-256, accepted once before they expire. */
import { createHash, randomBytes } from 'node:crypto';
import { dependencyTimer } from '@redpacket/lib';
import type { Pool } from '@redpacket/db';

/** 144 random bits: over the 128 a guess must beat, and a whole number of base64url characters (24). */
export const LOGIN_CODE_BYTES = 18;
/** A presented code longer than this cannot be one of ours; refused before hashing. */
export const MAX_LOGIN_CODE_LENGTH = 64;

const issueTimer = dependencyTimer('mysql', 'account_issue_login_code');
const useTimer = dependencyTimer('mysql', 'account_use_login_code');

const sha256 = (code: string): Buffer => createHash('sha256').update(code, 'utf8').digest();

/** Makes a code for `userId`, valid until `expiresAt`, replacing any earlier code of that user. */
export async function issueLoginCode(pool: Pool, userId: string, expiresAt: Date, issuedBy: string): Promise<string> {
  const code = randomBytes(LOGIN_CODE_BYTES).toString('base64url');
  await issueTimer.time(() =>
    pool.query(
      `INSERT INTO login_codes (user_id, code_sha256, expires_at, used_at, issued_by) VALUES (?, ?, ?, NULL, ?)
       ON DUPLICATE KEY UPDATE code_sha256 = VALUES(code_sha256), expires_at = VALUES(expires_at),
         used_at = NULL, issued_by = VALUES(issued_by), issued_at = CURRENT_TIMESTAMP(3)`,
      [userId, sha256(code), expiresAt, issuedBy],
    ),
  );
  return code;
}

/**
 * Uses `userId`'s code if `code` is it, unused and unexpired at `now`: true exactly once per code.
 * One conditional UPDATE checks and marks it, so two calls with one code cannot both win.
 */
export async function useLoginCode(pool: Pool, userId: string, code: string, now: Date): Promise<boolean> {
  if (code.length > MAX_LOGIN_CODE_LENGTH) return false;
  const [res] = await useTimer.time(() =>
    pool.query(
      `UPDATE login_codes SET used_at = ?
       WHERE user_id = ? AND code_sha256 = ? AND used_at IS NULL AND expires_at > ?`,
      [now, userId, sha256(code), now],
    ),
  );
  return (res as { affectedRows: number }).affectedRows === 1;
}

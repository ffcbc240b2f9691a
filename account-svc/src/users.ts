/** User records: validation, and the SQL that reads and writes the users table. */
import { Buffer } from 'node:buffer';
import { dependencyTimer, invalidArgument, USER_ID_PATTERN, type Role } from '@redpacket/lib';
import type { Account, UserRecord } from '@redpacket/proto';
import type { Pool, PoolConnection } from '@redpacket/db';
import { accountId } from '@redpacket/ledger';
import type { RowDataPacket } from 'mysql2/promise';

/** bcrypt uses at most 72 bytes; a longer secret would be silently cut, so it is refused. */
export const MAX_PASSWORD_BYTES = 72;
export const MIN_PASSWORD_LENGTH = 8;
export const MAX_DISPLAY_NAME = 128;
export const MAX_REASON = 256;

/** A validated user record, ready to insert (password still in clear). */
export interface NewUser {
  userId: string;
  displayName: string;
  password: string | undefined;
  riskScore: number;
  role: Role;
}

/** One row of the users table. */
export interface UserRow {
  user_id: string;
  display_name: string;
  password_hash: string | null;
  role: string;
  created_at: Date;
  risk_score: number;
  blocked: number;
  block_reason: string;
  blocked_at: Date | null;
}

export function checkUserId(id: string, field = 'user_id'): string {
  if (!USER_ID_PATTERN.test(id)) throw invalidArgument(field, 'must be 1-128 characters of [A-Za-z0-9_.@:-]');
  return id;
}

export function checkRiskScore(score: number, field = 'risk_score'): number {
  if (!Number.isInteger(score) || score < 0 || score > 100) throw invalidArgument(field, 'must be 0-100');
  return score;
}

export function checkReason(reason: string): string {
  const r = reason.trim();
  if ([...r].length > MAX_REASON) throw invalidArgument('reason', `must be at most ${MAX_REASON} characters`);
  return r;
}

/** Validates one record completely; throws INVALID_ARGUMENT naming the field. */
export function validateUser(u: UserRecord | undefined, field = 'user'): NewUser {
  if (!u) throw invalidArgument(field, 'is required');
  const userId = checkUserId(u.userId, `${field}.user_id`);
  const displayName = u.displayName.trim();
  if ([...displayName].length > MAX_DISPLAY_NAME) {
    throw invalidArgument(`${field}.display_name`, `must be at most ${MAX_DISPLAY_NAME} characters`);
  }
  let password: string | undefined;
  if (u.password !== '') {
    if (u.password.length < MIN_PASSWORD_LENGTH || Buffer.byteLength(u.password, 'utf8') > MAX_PASSWORD_BYTES) {
      throw invalidArgument(
        `${field}.password`,
        `must be ${MIN_PASSWORD_LENGTH} characters to ${MAX_PASSWORD_BYTES} bytes, or empty`,
      );
    }
    password = u.password;
  }
  if (u.role !== '' && !ROLES.includes(u.role as Role)) {
    throw invalidArgument(`${field}.role`, 'must be "user", "merchant", "admin" or empty');
  }
  const role: Role = u.role === '' ? 'user' : (u.role as Role);
  return { userId, displayName, password, riskScore: checkRiskScore(u.riskScore, `${field}.risk_score`), role };
}

/** The roles an account may have: a shop that redeems packet codes is a `merchant`. */
export const ROLES: readonly Role[] = ['user', 'merchant', 'admin'];

/** The role stored on a row, as a token claims it (anything unknown counts as a plain user). */
export const roleOf = (stored: string): Role => (ROLES.includes(stored as Role) ? (stored as Role) : 'user');

const USER_COLUMNS =
  'user_id, display_name, password_hash, role, created_at, risk_score, blocked, block_reason, blocked_at';

const selectTimer = dependencyTimer('mysql', 'account_select_user');
const balanceTimer = dependencyTimer('mysql', 'account_balance');

/** Reads one user; `lock` takes the row lock that serializes changes and their Redis mirror. */
export async function selectUser(
  db: Pool | PoolConnection,
  userId: string,
  lock: '' | 'FOR UPDATE' = '',
): Promise<UserRow | undefined> {
  const [rows] = await selectTimer.time(() =>
    db.query<RowDataPacket[]>(`SELECT ${USER_COLUMNS} FROM users WHERE user_id = ? ${lock}`, [userId]),
  );
  return rows[0] as UserRow | undefined;
}

/** Inserts rows; with `ignoreDuplicates` an existing user id is skipped, not an error. */
export async function insertUsers(
  conn: PoolConnection,
  users: { userId: string; displayName: string; passwordHash: string | null; role: Role; riskScore: number }[],
  ignoreDuplicates: boolean,
): Promise<number> {
  const values = users.map((u) => [u.userId, u.displayName, u.passwordHash, u.role, u.riskScore]);
  const [res] = await conn.query(
    `INSERT ${ignoreDuplicates ? 'IGNORE ' : ''}INTO users (user_id, display_name, password_hash, role, risk_score) VALUES ?`,
    [values],
  );
  return (res as { affectedRows: number }).affectedRows;
}

export interface Balance {
  cents: bigint;
  count: bigint;
}

/**
 * The user's ledger balance (`user:<id>`: awards in, redemptions and withdrawals out) and the
 * count of their delivered awards, in one round trip. Tables not migrated yet read as zero.
 */
export async function balanceOf(pool: Pool, userId: string): Promise<Balance> {
  try {
    const [rows] = await balanceTimer.time(() =>
      pool.query<RowDataPacket[]>(
        `SELECT (SELECT COALESCE(MAX(balance_cents), 0) FROM accounts WHERE account_id = ?) AS cents,
                (SELECT COUNT(*) FROM awards WHERE user_id = ?) AS n`,
        [accountId.user(userId), userId],
      ),
    );
    return { cents: BigInt(rows[0]?.['cents'] ?? 0), count: BigInt(rows[0]?.['n'] ?? 0) };
  } catch (err) {
    if ((err as { errno?: number }).errno === 1146) return { cents: 0n, count: 0n }; // ER_NO_SUCH_TABLE
    throw err;
  }
}

export function toAccount(row: UserRow, balance: Balance): Account {
  return {
    userId: row.user_id,
    displayName: row.display_name,
    createdAt: row.created_at,
    blocked: row.blocked !== 0,
    blockReason: row.block_reason,
    blockedAt: row.blocked_at ?? undefined,
    riskScore: row.risk_score,
    balanceCents: balance.cents,
    awardsCount: balance.count,
    role: row.role,
    hasPassword: row.password_hash !== null,
    accountId: '',
  };
}

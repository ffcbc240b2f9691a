/** Account changes: open one, block, unblock, set the risk score; each mirrored into Redis. */
import { status } from '@grpc/grpc-js';
import { notFound, ServiceError, type RedisClient } from '@redpacket/lib';
import type { Pool, PoolConnection } from '@redpacket/db';
import { inMirroredTransaction } from './eligibility-mirror.js';
import { hashPassword } from './passwords.js';
import { insertUsers, selectUser, type NewUser, type UserRow } from './users.js';

export interface AccountStore {
  pool: Pool;
  redis: RedisClient;
  /** bcrypt cost factor (log2 of the rounds). */
  passwordCost: number;
}

/** Opens one account; ALREADY_EXISTS if the id is taken. */
export async function registerUser(store: AccountStore, user: NewUser): Promise<UserRow> {
  const passwordHash = user.password === undefined ? null : await hashPassword(user.password, store.passwordCost);
  return inMirroredTransaction(store.pool, store.redis, async (conn) => {
    try {
      await insertUsers(conn, [{ ...user, passwordHash }], false);
    } catch (err) {
      if ((err as { errno?: number }).errno === 1062) {
        throw new ServiceError(status.ALREADY_EXISTS, `user ${user.userId} already exists`);
      }
      throw err;
    }
    return { result: await mustSelect(conn, user.userId), touched: user.riskScore > 0 ? [user.userId] : [] };
  });
}

async function mustSelect(conn: PoolConnection, userId: string, lock: '' | 'FOR UPDATE' = ''): Promise<UserRow> {
  const row = await selectUser(conn, userId, lock);
  if (!row) throw notFound(`user ${userId}`);
  return row;
}

/** Locks the user's row, applies `sql`, mirrors the result and returns the row as committed. */
function changeUser(store: AccountStore, userId: string, sql: string, params: unknown[], event?: BlockEvent) {
  return inMirroredTransaction(store.pool, store.redis, async (conn) => {
    await mustSelect(conn, userId, 'FOR UPDATE');
    await conn.query(sql, params);
    if (event) {
      await conn.query('INSERT INTO user_block_events (user_id, action, reason, actor) VALUES (?, ?, ?, ?)', [
        userId,
        event.action,
        event.reason,
        event.actor,
      ]);
    }
    return { result: await mustSelect(conn, userId), touched: [userId] };
  });
}

interface BlockEvent {
  action: 'block' | 'unblock';
  reason: string;
  actor: string;
}

/** Blocks a user (again: the reason is updated, the first blocked_at kept). */
export function blockUser(store: AccountStore, userId: string, reason: string, actor: string): Promise<UserRow> {
  return changeUser(
    store,
    userId,
    // blocked_at is assigned before blocked changes: MySQL applies SET items left to right.
    'UPDATE users SET blocked_at = IF(blocked, blocked_at, CURRENT_TIMESTAMP(3)), blocked = 1, block_reason = ? WHERE user_id = ?',
    [reason, userId],
    { action: 'block', reason, actor },
  );
}

export function unblockUser(store: AccountStore, userId: string, actor: string): Promise<UserRow> {
  return changeUser(
    store,
    userId,
    "UPDATE users SET blocked = 0, block_reason = '', blocked_at = NULL WHERE user_id = ?",
    [userId],
    { action: 'unblock', reason: '', actor },
  );
}

export function setRiskScore(store: AccountStore, userId: string, score: number): Promise<UserRow> {
  return changeUser(store, userId, 'UPDATE users SET risk_score = ? WHERE user_id = ?', [score, userId]);
}

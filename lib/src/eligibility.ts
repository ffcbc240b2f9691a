/**
 * Who may grab: the blocklist (`rp:blocked`) and risk scores (`rp:risk`) that account-svc keeps
 * in Redis, and the change feed that lets every grab-svc process hold a copy in memory. The grab
 * script cannot read those two global keys on Redis Cluster (they live on other slots than a
 * campaign), so grab-svc reads its copy and passes the verdict into the script.
 */
import { keys } from './keys.js';
import type { RedisClient } from './redis.js';

/** Pub/sub channel: one message for every write of the two keys, after the write. */
export const ELIGIBILITY_CHANNEL = 'rp:eligibility';

/** The complete eligibility state of one user (not a delta: applying it twice is harmless). */
export interface EligibilityState {
  userId: string;
  blocked: boolean;
  /** 0 when the user has no score. */
  riskScore: number;
}

/** A message on ELIGIBILITY_CHANNEL: [[userId, 0|1, riskScore], ...]. */
export const encodeEligibility = (rows: readonly EligibilityState[]): string =>
  JSON.stringify(rows.map((r) => [r.userId, r.blocked ? 1 : 0, r.riskScore]));

export function decodeEligibility(message: string): EligibilityState[] {
  const parsed = JSON.parse(message) as unknown;
  if (!Array.isArray(parsed)) throw new Error('eligibility message is not an array');
  return parsed.map((row: unknown) => {
    if (!Array.isArray(row) || typeof row[0] !== 'string' || typeof row[2] !== 'number') {
      throw new Error('malformed eligibility row');
    }
    return { userId: row[0], blocked: row[1] === 1, riskScore: row[2] };
  });
}

/**
 * Writes the exact state of some users into `rp:blocked` / `rp:risk`, then announces it on
 * ELIGIBILITY_CHANNEL. Separate commands, not a pipeline: on Redis Cluster the keys live on
 * different slots.
 */
export async function writeEligibility(redis: RedisClient, rows: readonly EligibilityState[]): Promise<void> {
  if (rows.length === 0) return;
  const block = rows.filter((r) => r.blocked).map((r) => r.userId);
  const unblock = rows.filter((r) => !r.blocked).map((r) => r.userId);
  const risky = rows.filter((r) => r.riskScore > 0);
  const clean = rows.filter((r) => r.riskScore <= 0).map((r) => r.userId);
  const ops: Promise<unknown>[] = [];
  if (block.length) ops.push(redis.sadd(keys.blocked, ...block));
  if (unblock.length) ops.push(redis.srem(keys.blocked, ...unblock));
  if (risky.length) ops.push(redis.hset(keys.risk, Object.fromEntries(risky.map((r) => [r.userId, r.riskScore]))));
  if (clean.length) ops.push(redis.hdel(keys.risk, ...clean));
  await Promise.all(ops);
  await redis.publish(ELIGIBILITY_CHANNEL, encodeEligibility(rows));
}

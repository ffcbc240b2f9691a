/**
 * The Redis mirror of who may grab: `rp:blocked` (set of blocked user ids) and `rp:risk` (hash
 * user -> risk score, only scores above 0), announced on a pub/sub channel for grab-svc. MySQL is the record of
 * truth. Every change writes through while it holds the user's row lock, so mirror writes
 * happen in commit order; `resyncMirror` rebuilds the mirror from MySQL (Redis keeps nothing on
 * disk) on start and whenever the Redis connection comes back.
 */
import { dependencyTimer, keys, ServiceError, writeEligibility, type Logger, type RedisClient } from '@redpacket/lib';
import type { Pool, PoolConnection } from '@redpacket/db';
import { status } from '@grpc/grpc-js';
import type { RowDataPacket } from 'mysql2/promise';

/** The columns the mirror is made of. */
export interface MirrorState {
  user_id: string;
  blocked: number;
  risk_score: number;
}

/**
 * Writes the exact state of some users into the mirror and announces it on the eligibility
 * channel, from which every grab-svc process keeps its in-memory copy.
 */
export async function mirrorUsers(redis: RedisClient, rows: readonly MirrorState[]): Promise<void> {
  if (rows.length === 0) return;
  try {
    await writeEligibility(
      redis,
      rows.map((r) => ({ userId: r.user_id, blocked: r.blocked !== 0, riskScore: Math.max(0, r.risk_score) })),
    );
  } catch (err) {
    // The caller rolls back. A half-written mirror (one key written, the other not) is put right
    // by the resync that runs when the Redis connection is ready again.
    throw new ServiceError(
      status.UNAVAILABLE,
      `the eligibility mirror in Redis could not be written (${(err as Error).message}); try again`,
    );
  }
}

const ER_LOCK_DEADLOCK = 1213;
const txTimer = dependencyTimer('mysql', 'account_transaction');
const mirrorTimer = dependencyTimer('redis', 'account_mirror');

/**
 * Runs `fn` in a transaction on a connection of its own. A deadlock victim (InnoDB rolled it
 * back whole) is run again, at most three times in all.
 */
async function transaction<T>(
  pool: Pool,
  fn: (conn: PoolConnection) => Promise<T>,
  isolation?: 'READ COMMITTED',
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const conn = await pool.getConnection();
    try {
      // Timed whole, one observation an attempt: the statements, the commit, and any Redis mirror
      // write made while the row locks are held (also timed on its own as account_mirror).
      return await txTimer.time(async () => {
        if (isolation) await conn.query(`SET TRANSACTION ISOLATION LEVEL ${isolation}`);
        await conn.beginTransaction();
        const result = await fn(conn);
        await conn.commit();
        return result;
      });
    } catch (err) {
      await conn.rollback().catch(() => undefined);
      if ((err as { errno?: number }).errno !== ER_LOCK_DEADLOCK || attempt >= 3) throw err;
    } finally {
      conn.release();
    }
  }
}

/**
 * Runs `work` in a transaction; `work` returns the users whose mirror state it changed, and
 * those are read back and mirrored before the commit, while their row locks are still held.
 * A Redis failure rolls the change back.
 */
export function inMirroredTransaction<T>(
  pool: Pool,
  redis: RedisClient,
  work: (conn: PoolConnection) => Promise<{ result: T; touched: string[] }>,
): Promise<T> {
  return transaction(pool, async (conn) => {
    const { result, touched } = await work(conn);
    if (touched.length) {
      const [rows] = await conn.query<RowDataPacket[]>(
        'SELECT user_id, blocked, risk_score FROM users WHERE user_id IN (?) LOCK IN SHARE MODE',
        [touched],
      );
      await mirrorTimer.time(() => mirrorUsers(redis, rows as MirrorState[]));
    }
    return result;
  });
}

export interface ResyncOptions {
  /** Only users whose id starts with this (tests); empty means everybody. */
  userPrefix?: string;
  /** Rows read per query. */
  chunk?: number;
}

export interface ResyncResult {
  /** Users of MySQL with a mirror entry (blocked or risky). */
  flagged: number;
  /** Redis members checked against MySQL. */
  checked: number;
  ms: number;
}

/**
 * Mirrors the exact state MySQL holds for these users (none for an unknown one). The rows are
 * read by primary key under share locks in READ COMMITTED, so a concurrent change either is seen
 * or waits, and, touching no secondary index, the read cannot deadlock with a change.
 */
function syncUsers(pool: Pool, redis: RedisClient, userIds: string[]): Promise<void> {
  if (userIds.length === 0) return Promise.resolve();
  return transaction(
    pool,
    async (conn) => {
      const [rows] = await conn.query<RowDataPacket[]>(
        'SELECT user_id, blocked, risk_score FROM users WHERE user_id IN (?) LOCK IN SHARE MODE',
        [userIds],
      );
      const known = new Set(rows.map((r) => String(r['user_id'])));
      const unknown = userIds.filter((id) => !known.has(id)).map((user_id) => ({ user_id, blocked: 0, risk_score: 0 }));
      await mirrorUsers(redis, [...(rows as MirrorState[]), ...unknown]);
    },
    'READ COMMITTED',
  );
}

/** Calls `visit` with batches of the user ids the mirror holds (both keys) that start with `prefix`. */
export async function scanMirror(
  redis: RedisClient,
  prefix: string,
  count: number,
  visit: (userIds: string[]) => Promise<void>,
): Promise<void> {
  const match = `${escapeGlob(prefix)}*`;
  for (const [key, isHash] of [
    [keys.blocked, false],
    [keys.risk, true],
  ] as const) {
    let cursor = '0';
    do {
      const [next, found] = isHash
        ? await redis.hscan(key, cursor, 'MATCH', match, 'COUNT', count)
        : await redis.sscan(key, cursor, 'MATCH', match, 'COUNT', count);
      cursor = next;
      // HSCAN answers field, value, field, value...
      if (found.length) await visit(isHash ? found.filter((_, i) => i % 2 === 0) : found);
    } while (cursor !== '0');
  }
}

const escapeLike = (s: string): string => s.replace(/[\\%_]/g, (c) => `\\${c}`);
const escapeGlob = (s: string): string => s.replace(/[\\*?[\]^]/g, (c) => `\\${c}`);

/**
 * Rebuilds the mirror from MySQL: first every flagged user (blocked or risky) is written, then
 * every member Redis holds is checked against MySQL, and those MySQL no longer flags (or does
 * not know) are removed. Safe to run while the service is serving.
 */
export async function resyncMirror(pool: Pool, redis: RedisClient, opts: ResyncOptions = {}): Promise<ResyncResult> {
  const started = Date.now();
  const chunk = opts.chunk ?? 5000;
  const prefix = opts.userPrefix ?? '';
  let flagged = 0;
  let after = '';
  for (;;) {
    // Found through the index without locks; syncUsers then reads each by its key.
    const [rows] = await pool.query<RowDataPacket[]>(
      'SELECT user_id FROM users WHERE flagged = 1 AND user_id > ? AND user_id LIKE ? ORDER BY user_id LIMIT ?',
      [after, `${escapeLike(prefix)}%`, chunk],
    );
    const ids = rows.map((r) => String(r['user_id']));
    await syncUsers(pool, redis, ids);
    flagged += ids.length;
    if (ids.length < chunk) break;
    after = ids[ids.length - 1]!;
  }

  let checked = 0;
  const check = async (members: string[]): Promise<void> => {
    checked += members.length;
    await syncUsers(pool, redis, members);
  };
  await scanMirror(redis, prefix, chunk, check);
  return { flagged, checked, ms: Date.now() - started };
}

/**
 * Resyncs now, then again every time the Redis connection is ready after a reconnect (a Redis
 * that restarted is empty). Returns the first resync's figures and a function that stops it.
 */
export async function keepMirrorInSync(
  pool: Pool,
  redis: RedisClient,
  log: Logger,
  opts: ResyncOptions = {},
): Promise<{ first: ResyncResult; stop(): void }> {
  const run = async (why: string): Promise<ResyncResult> => {
    const r = await resyncMirror(pool, redis, opts);
    log.info({ why, ...r }, 'eligibility mirror resynced from MySQL');
    return r;
  };
  const first = await run('start');
  // Registered after the first resync: by then the connection's first 'ready' has passed.
  const onReady = (): void => {
    run('redis reconnected').catch((err: unknown) => log.error({ err }, 'eligibility mirror resync failed'));
  };
  redis.on('ready', onReady);
  return { first, stop: () => void redis.off('ready', onReady) };
}

/**
 * Transfers: debit one account, credit another, the same positive amount, in one MySQL
 * transaction, once per idempotency key. One code path serves a single transfer and a batch out
 * of one (hot) account, which is debited once with the batch's sum.
 */
import { createHash } from 'node:crypto';
import type { Pool, PoolConnection } from '@redpacket/db';
import type { ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import { type AccountKind, BadTransferError, EXTERNAL, kindOf, MAX_TRANSFER_CENTS } from './accounts.js';
import { IdempotencyConflictError, InsufficientFundsError } from './errors.js';

/** Why money moved; stored with the transfer. */
export type TransferKind = 'deposit' | 'withdrawal' | 'funding' | 'award' | 'refund' | 'redemption';

/** The longest idempotency key (the column is VARCHAR(191)). */
export const MAX_KEY_LENGTH = 191;
/** The most transfers one batch may carry (one multi-row INSERT each for transfers and entries). */
export const MAX_BATCH = 1000;
/** Attempts of a transaction that lost a deadlock or an idempotency race to a concurrent one. */
const ATTEMPTS = 10;
const ER_DUP_ENTRY = 1062;
const ER_LOCK_DEADLOCK = 1213;

/**
 * The idempotency key of a call: its parts joined by ':' (readable in the table), or, when that
 * is longer than a key may be, their SHA-256 (a user id and a request id may each be 128 long).
 */
export function idempotencyKey(...parts: string[]): string {
  const key = parts.join(':');
  return key.length <= MAX_KEY_LENGTH ? key : `sha256:${createHash('sha256').update(key).digest('hex')}`;
}

/** One leg of a batch: to whom, how much, under which idempotency key. */
export interface TransferItem {
  key: string;
  to: string;
  amountCents: bigint;
  note?: string;
}

/** A single transfer. */
export interface TransferRequest extends TransferItem {
  from: string;
  kind: TransferKind;
}

/** Many transfers out of one account, applied together. */
export interface BatchRequest {
  from: string;
  kind: TransferKind;
  items: TransferItem[];
  /**
   * The caller knows no item's key was applied before (rows of its own, unique per key, were all
   * new in this transaction): the lookup of applied keys is skipped. A wrong claim fails on the
   * transfers' unique key (ER_DUP_ENTRY); it never moves money twice.
   */
  allNew?: boolean;
}

/** A transfer as written, with both balances right after it (the first call's, on a replay). */
export interface Transfer {
  transferId: string;
  key: string;
  kind: TransferKind;
  from: string;
  to: string;
  amountCents: bigint;
  note: string;
  createdAt: Date;
  fromBalanceCents: bigint;
  toBalanceCents: bigint;
  /** True when the key had been applied before: this call moved nothing. */
  replayed: boolean;
}

/** Moves `amountCents` from `from` to `to` once per `key`; a repeat returns the first transfer. */
export async function transfer(pool: Pool, req: TransferRequest): Promise<Transfer> {
  const [t] = await transferBatch(pool, { from: req.from, kind: req.kind, items: [req] });
  return t!;
}

/**
 * Applies every item of the batch not applied before, in one transaction that debits `from`
 * once with their sum; either all new items are written or none (InsufficientFundsError).
 * Returns one Transfer per item, in order.
 */
export async function transferBatch(pool: Pool, req: BatchRequest): Promise<Transfer[]> {
  checkBatch(req);
  for (let attempt = 1; ; attempt++) {
    const conn = await pool.getConnection();
    try {
      // READ COMMITTED: reads see the latest commits and take no gap locks, which would make
      // concurrent inserts of neighbouring keys deadlock.
      await conn.query('SET TRANSACTION ISOLATION LEVEL READ COMMITTED');
      await conn.beginTransaction();
      // A retry after a duplicate key looks the applied keys up, whatever the caller claimed.
      const out = await applyBatch(conn, attempt === 1 ? req : { ...req, allNew: false });
      await conn.commit();
      return out;
    } catch (err) {
      await conn.rollback().catch(() => undefined);
      if (attempt >= ATTEMPTS || !lostRace(err)) throw err;
    } finally {
      conn.release();
    }
  }
}

/**
 * transferBatch inside the caller's open transaction on `conn` (awards, funding and refunds are
 * written with the rows they pay for). No retry here: on a deadlock or a duplicate key the caller
 * rolls its whole transaction back and runs it again. READ COMMITTED is advised (see above).
 */
export async function transferBatchIn(conn: PoolConnection, req: BatchRequest): Promise<Transfer[]> {
  checkBatch(req);
  return applyBatch(conn, req);
}

/** transfer inside the caller's open transaction on `conn` (see transferBatchIn). */
export async function transferIn(conn: PoolConnection, req: TransferRequest): Promise<Transfer> {
  const [t] = await transferBatchIn(conn, { from: req.from, kind: req.kind, items: [req] });
  return t!;
}

/** A deadlock, or a concurrent call that inserted the same key first: the retry sees its result. */
function lostRace(err: unknown): boolean {
  const errno = (err as { errno?: number }).errno;
  return errno === ER_LOCK_DEADLOCK || errno === ER_DUP_ENTRY;
}

function checkBatch(req: BatchRequest): void {
  kindOf(req.from, 'from');
  if (req.items.length === 0) throw new BadTransferError('items', 'a batch needs at least one transfer');
  if (req.items.length > MAX_BATCH) throw new BadTransferError('items', `at most ${MAX_BATCH} transfers a batch`);
  const keys = new Set<string>();
  for (const it of req.items) {
    if (it.key.length === 0 || it.key.length > MAX_KEY_LENGTH) {
      throw new BadTransferError('key', `must be 1-${MAX_KEY_LENGTH} characters`);
    }
    if (keys.has(it.key)) throw new BadTransferError('key', `"${it.key}" appears twice in one batch`);
    keys.add(it.key);
    kindOf(it.to, 'to');
    if (it.to === req.from) throw new BadTransferError('to', `${it.to} cannot pay itself`);
    if (typeof it.amountCents !== 'bigint' || it.amountCents <= 0n || it.amountCents > MAX_TRANSFER_CENTS) {
      throw new BadTransferError('amount_cents', `must be between 1 and ${MAX_TRANSFER_CENTS}`);
    }
    if ((it.note ?? '').length > 255) throw new BadTransferError('note', 'at most 255 characters');
  }
}

/** Accounts' rank in the lock order: the hot, shared ones last. */
const LOCK_RANK: Record<AccountKind, number> = { user: 0, merchant: 0, operator: 1, escrow: 2, external: 3 };

/** The order every transaction locks accounts in: by rank, then by id. */
function lockOrder(a: string, b: string): number {
  const r = LOCK_RANK[kindOf(a)] - LOCK_RANK[kindOf(b)];
  return r !== 0 ? r : a < b ? -1 : a > b ? 1 : 0;
}

const summary = (from: string, to: string, amount: bigint, kind: string): string =>
  `${kind} of ${amount} cents from ${from} to ${to}`;

/** The transaction's body (on a connection with a transaction open). */
async function applyBatch(conn: PoolConnection, req: BatchRequest): Promise<Transfer[]> {
  const keys = req.items.map((i) => i.key);
  // A key being written by a concurrent call is not seen here: the INSERT below then waits for
  // it and fails on the duplicate, and the retry finds it.
  const [found] =
    req.allNew === true
      ? [[] as RowDataPacket[]]
      : await conn.query<RowDataPacket[]>(
          `SELECT transfer_id, idempotency_key, kind, debit_account, credit_account, amount_cents, note, created_at
             FROM transfers WHERE idempotency_key IN (?)`,
          [keys],
        );
  const before = new Map(found.map((r) => [String(r['idempotency_key']), r]));
  for (const it of req.items) {
    const r = before.get(it.key);
    if (!r) continue;
    const first = summary(r['debit_account'], r['credit_account'], BigInt(r['amount_cents']), r['kind']);
    const asked = summary(req.from, it.to, it.amountCents, req.kind);
    if (first !== asked) throw new IdempotencyConflictError(it.key, first, asked);
  }
  const fresh = req.items.filter((i) => !before.has(i.key));
  const written = fresh.length > 0 ? await writeTransfers(conn, req, fresh) : new Map<string, Transfer>();
  const replayed = await replays(conn, [...before.values()]);
  return req.items.map((i) => (written.get(i.key) ?? replayed.get(i.key))!);
}

/** Writes the new transfers, the one debit, the credits and the entries. */
async function writeTransfers(
  conn: PoolConnection,
  req: BatchRequest,
  fresh: TransferItem[],
): Promise<Map<string, Transfer>> {
  const sum = fresh.reduce((s, i) => s + i.amountCents, 0n);
  // Inserted first: a concurrent call with one of these keys makes this fail (and retry) here.
  await conn.query(
    'INSERT INTO transfers (idempotency_key, kind, debit_account, credit_account, amount_cents, note) VALUES ?',
    [fresh.map((i) => [i.key, req.kind, req.from, i.to, i.amountCents, i.note ?? ''])],
  );
  const credits = new Map<string, bigint>();
  for (const i of fresh) credits.set(i.to, (credits.get(i.to) ?? 0n) + i.amountCents);
  const [ids] = await conn.query<RowDataPacket[]>(
    'SELECT transfer_id, idempotency_key, created_at FROM transfers WHERE idempotency_key IN (?)',
    [fresh.map((i) => i.key)],
  );
  const idOf = new Map(ids.map((r) => [String(r['idempotency_key']), r]));
  // Every transaction locks its accounts in one global order (lockOrder), so two never wait on
  // each other in a cycle; the hot ones (an escrow, external) come last, so their locks are held
  // for the fewest statements. A credit creates its account on the first one.
  const credit = (accounts: string[]): Promise<unknown> =>
    accounts.length === 0
      ? Promise.resolve()
      : conn.query(
          `INSERT INTO accounts (account_id, kind, balance_cents) VALUES ?
             ON DUPLICATE KEY UPDATE balance_cents = balance_cents + VALUES(balance_cents)`,
          [accounts.map((id) => [id, kindOf(id), credits.get(id)!])],
        );
  const credited = [...credits.keys()].sort(lockOrder);
  await credit(credited.filter((id) => lockOrder(id, req.from) < 0));
  // The one debit of the batch: conditional, so no concurrency can take it below zero.
  const [debit] = await conn.query<ResultSetHeader>(
    `UPDATE accounts SET balance_cents = balance_cents - ?
      WHERE account_id = ? AND (account_id = ? OR balance_cents >= ?)`,
    [sum, req.from, EXTERNAL, sum],
  );
  if (debit.affectedRows !== 1) {
    const [rows] = await conn.query<RowDataPacket[]>('SELECT balance_cents FROM accounts WHERE account_id = ?', [
      req.from,
    ]);
    throw new InsufficientFundsError(req.from, BigInt(rows[0]?.['balance_cents'] ?? 0), sum);
  }
  await credit(credited.filter((id) => lockOrder(id, req.from) > 0));
  // Every account of the batch is locked by this transaction now: these are its final balances,
  // the ones every entry below is walked back from.
  const [finals] = await conn.query<RowDataPacket[]>(
    'SELECT account_id, balance_cents FROM accounts WHERE account_id IN (?)',
    [[req.from, ...credits.keys()]],
  );
  const now = new Map(finals.map((r) => [String(r['account_id']), BigInt(r['balance_cents'])]));
  // Walking back from the final balances gives each entry the balance right after it.
  const out = new Map<string, Transfer>();
  const entries: unknown[][] = [];
  for (let n = fresh.length - 1; n >= 0; n--) {
    const i = fresh[n]!;
    const row = idOf.get(i.key)!;
    const fromAfter = now.get(req.from)!;
    const toAfter = now.get(i.to)!;
    now.set(req.from, fromAfter + i.amountCents);
    now.set(i.to, toAfter - i.amountCents);
    const id = String(row['transfer_id']);
    entries.push([id, req.from, -i.amountCents, fromAfter], [id, i.to, i.amountCents, toAfter]);
    out.set(i.key, {
      transferId: id,
      key: i.key,
      kind: req.kind,
      from: req.from,
      to: i.to,
      amountCents: i.amountCents,
      note: i.note ?? '',
      createdAt: row['created_at'] as Date,
      fromBalanceCents: fromAfter,
      toBalanceCents: toAfter,
      replayed: false,
    });
  }
  await conn.query('INSERT INTO entries (transfer_id, account_id, amount_cents, balance_after_cents) VALUES ?', [
    entries,
  ]);
  return out;
}

/** The transfers found already applied, with the balances their entries recorded. */
async function replays(conn: PoolConnection, rows: RowDataPacket[]): Promise<Map<string, Transfer>> {
  const out = new Map<string, Transfer>();
  if (rows.length === 0) return out;
  const [entries] = await conn.query<RowDataPacket[]>(
    'SELECT transfer_id, account_id, balance_after_cents FROM entries WHERE transfer_id IN (?)',
    [rows.map((r) => r['transfer_id'])],
  );
  const after = new Map(
    entries.map((e) => [`${e['transfer_id']} ${e['account_id']}`, BigInt(e['balance_after_cents'])]),
  );
  for (const r of rows) {
    const id = String(r['transfer_id']);
    out.set(String(r['idempotency_key']), {
      transferId: id,
      key: String(r['idempotency_key']),
      kind: r['kind'] as TransferKind,
      from: String(r['debit_account']),
      to: String(r['credit_account']),
      amountCents: BigInt(r['amount_cents']),
      note: String(r['note']),
      createdAt: r['created_at'] as Date,
      fromBalanceCents: after.get(`${id} ${r['debit_account']}`) ?? 0n,
      toBalanceCents: after.get(`${id} ${r['credit_account']}`) ?? 0n,
      replayed: true,
    });
  }
  return out;
}

/** An account's balance in cents (0 for an account never credited). */
export async function balanceOf(pool: Pool | PoolConnection, accountId: string): Promise<bigint> {
  kindOf(accountId);
  const [rows] = await pool.query<RowDataPacket[]>('SELECT balance_cents FROM accounts WHERE account_id = ?', [
    accountId,
  ]);
  return BigInt(rows[0]?.['balance_cents'] ?? 0);
}

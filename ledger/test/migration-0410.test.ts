/**
 * db/migrations/0410: the old credit-only `ledger` rows become transfers (an opening deposit into
 * each campaign's escrow, then escrow -> winner and escrow -> owner), once, with the audit
 * consistent. The old rows are written here, then the migration is run again as a database that
 * had them before this version would run it.
 */
import { migrate } from '@redpacket/db';
import type { RowDataPacket } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accountId, audit, EXTERNAL, idempotencyKey, transfer, transferBatch } from '../src/index.js';
import { privateDatabase, type PrivateDatabase } from '../src/testing.js';

const MIGRATION = '0410_ledger_credits_to_transfers.sql';
let db: PrivateDatabase;

beforeAll(async () => {
  db = await privateDatabase(4);
});
afterAll(async () => {
  await db?.drop();
});

/** Runs 0410 again, as on a database migrated up to 0400 only. */
async function rerun(): Promise<string[]> {
  await db.pool.query('DELETE FROM schema_migrations WHERE name = ?', [MIGRATION]);
  return migrate(db.url);
}

const balances = async (): Promise<Map<string, bigint>> => {
  const [rows] = await db.pool.query<RowDataPacket[]>('SELECT account_id, balance_cents FROM accounts');
  return new Map(rows.map((r) => [String(r['account_id']), BigInt(r['balance_cents'])]));
};

const oldRow = (account: string, campaign: string, kind: 'award' | 'refund', ref: string, cents: number) =>
  db.pool.query('INSERT INTO ledger (account_id, campaign_id, kind, ref, amount_cents) VALUES (?, ?, ?, ?, ?)', [
    account,
    campaign,
    kind,
    ref,
    cents,
  ]);

describe('migration 0410: old ledger credits into transfers', () => {
  it('moves awards and refunds behind an opening deposit, once, and the audit stays consistent', async () => {
    // money of the new model already there: the migration must leave it as it is
    await transfer(db.pool, { key: 'live', kind: 'deposit', from: EXTERNAL, to: 'user:ann', amountCents: 500n });
    // a settled campaign (awards + refund) and one still open (awards only), as gift-svc and
    // settle wrote them before this version; the longest ids the old columns hold
    const long = `c${'x'.repeat(63)}`;
    await oldRow('ann', 'c1', 'award', 'p1', 300);
    await oldRow('bob', 'c1', 'award', 'p2', 200);
    await oldRow('gala', 'c1', 'refund', 'refund', 500);
    await db.pool.query(
      'INSERT INTO settlements (campaign_id, owner_id, amount_total_cents, amount_awarded_cents, packets_awarded, refund_cents) VALUES (?, ?, ?, ?, ?, ?)',
      ['c1', 'gala', 1000, 500, 2, 500],
    );
    await oldRow('ann', 'c2', 'award', 'p3', 70);
    await oldRow(`u${'y'.repeat(100)}`, long, 'award', `p${'z'.repeat(63)}`, 9);

    expect(await rerun()).toEqual([MIGRATION]);
    const b = await balances();
    expect(b.get('user:ann')).toBe(500n + 300n + 70n);
    expect(b.get('user:bob')).toBe(200n);
    expect(b.get(`user:u${'y'.repeat(100)}`)).toBe(9n);
    expect(b.get('operator:gala')).toBe(500n);
    for (const c of ['c1', 'c2', long]) expect(b.get(accountId.escrow(c))).toBe(0n);
    expect(b.get(EXTERNAL)).toBe(-(500n + 1000n + 70n + 9n));
    const [moved] = await db.pool.query<RowDataPacket[]>(
      "SELECT kind, idempotency_key, debit_account, credit_account, amount_cents FROM transfers WHERE idempotency_key <> 'live' ORDER BY transfer_id",
    );
    expect(moved.map((t) => [t['kind'], t['debit_account'], t['credit_account'], t['amount_cents']])).toEqual([
      ['deposit', 'external', 'escrow:c1', '1000'],
      ['award', 'escrow:c1', 'user:ann', '300'],
      ['award', 'escrow:c1', 'user:bob', '200'],
      ['refund', 'escrow:c1', 'operator:gala', '500'],
      ['deposit', 'external', 'escrow:c2', '70'],
      ['award', 'escrow:c2', 'user:ann', '70'],
      ['deposit', 'external', `escrow:${long}`, '9'],
      ['award', `escrow:${long}`, `user:u${'y'.repeat(100)}`, '9'],
    ]);
    // the keys gift-svc and settle use
    expect(moved.map((t) => t['idempotency_key'])).toEqual(
      expect.arrayContaining([
        idempotencyKey('award', 'c1', 'p1'),
        idempotencyKey('refund', 'c1'),
        idempotencyKey('award', long, `p${'z'.repeat(63)}`),
      ]),
    );
    // entries record the balance right after each side: ann had 500, then +300, then +70
    const [ann] = await db.pool.query<RowDataPacket[]>(
      "SELECT balance_after_cents FROM entries WHERE account_id = 'user:ann' ORDER BY entry_id",
    );
    expect(ann.map((e) => e['balance_after_cents'])).toEqual(['500', '800', '870']);
    expect(await audit(db.pool)).toMatchObject({ consistent: true, problems: [], transfersChecked: 9 });

    // each old row is moved once: running the migration again moves nothing
    expect(await rerun()).toEqual([MIGRATION]);
    expect(await balances()).toEqual(b);
    expect(await audit(db.pool)).toMatchObject({ consistent: true, transfersChecked: 9 });

    // a redelivered old win replays the moved transfer instead of paying the winner twice
    const [again] = await transferBatch(db.pool, {
      from: accountId.escrow('c1'),
      kind: 'award',
      items: [{ key: idempotencyKey('award', 'c1', 'p1'), to: 'user:ann', amountCents: 300n }],
    });
    expect(again!.replayed).toBe(true);
    expect((await balances()).get('user:ann')).toBe(870n);
  });
});

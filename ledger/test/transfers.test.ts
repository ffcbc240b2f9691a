/** Transfers against the real MySQL: idempotency, no negative balance under concurrency, batches. */
import type { RowDataPacket } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  accountId,
  audit,
  BadTransferError,
  balanceOf,
  EXTERNAL,
  IdempotencyConflictError,
  InsufficientFundsError,
  transfer,
  transferBatch,
} from '../src/index.js';
import { privateDatabase, type PrivateDatabase } from '../src/testing.js';

let db: PrivateDatabase;
beforeAll(async () => {
  db = await privateDatabase();
});
afterAll(async () => {
  await db?.drop();
});

const deposit = (to: string, cents: bigint, key: string) =>
  transfer(db.pool, { key, from: EXTERNAL, to, amountCents: cents, kind: 'deposit' });

const count = async (sql: string, args: unknown[]): Promise<number> =>
  Number((await db.pool.query<RowDataPacket[]>(sql, args))[0][0]?.['n']);

describe('transfer', () => {
  it('moves money once per key and answers a repeat with the first transfer', async () => {
    const alice = accountId.user('alice');
    const first = await deposit(alice, 1500n, 'dep-alice-1');
    expect(first).toMatchObject({
      from: EXTERNAL,
      to: alice,
      amountCents: 1500n,
      toBalanceCents: 1500n,
      replayed: false,
    });
    await deposit(alice, 500n, 'dep-alice-2');
    const again = await deposit(alice, 1500n, 'dep-alice-1');
    expect(again).toMatchObject({ transferId: first.transferId, toBalanceCents: 1500n, replayed: true });
    expect(await balanceOf(db.pool, alice)).toBe(2000n);
    expect(await count('SELECT COUNT(*) AS n FROM transfers WHERE idempotency_key = ?', ['dep-alice-1'])).toBe(1);
  });

  it('refuses a key reused for a different transfer, and writes nothing', async () => {
    const bob = accountId.user('bob');
    await deposit(bob, 700n, 'dep-bob');
    await expect(deposit(bob, 701n, 'dep-bob')).rejects.toThrow(IdempotencyConflictError);
    await expect(deposit(accountId.user('carol'), 700n, 'dep-bob')).rejects.toThrow(/already used for deposit of 700/);
    expect(await balanceOf(db.pool, bob)).toBe(700n);
    expect(await balanceOf(db.pool, accountId.user('carol'))).toBe(0n);
  });

  it('refuses a short balance with InsufficientFunds and writes nothing', async () => {
    const dan = accountId.user('dan');
    await deposit(dan, 100n, 'dep-dan');
    const err = await transfer(db.pool, {
      key: 'wd-dan',
      from: dan,
      to: EXTERNAL,
      amountCents: 101n,
      kind: 'withdrawal',
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InsufficientFundsError);
    expect(err).toMatchObject({ accountId: dan, balanceCents: 100n, neededCents: 101n });
    expect(await count('SELECT COUNT(*) AS n FROM transfers WHERE idempotency_key = ?', ['wd-dan'])).toBe(0);
    // An account never credited holds nothing.
    await expect(
      transfer(db.pool, {
        key: 'wd-nobody',
        from: accountId.user('nobody'),
        to: EXTERNAL,
        amountCents: 1n,
        kind: 'withdrawal',
      }),
    ).rejects.toThrow(InsufficientFundsError);
  });

  it('refuses bad ids and amounts, naming the field', async () => {
    await expect(deposit('bank:1', 1n, 'k1')).rejects.toThrow(/^to: "bank:1" is no account id/);
    await expect(deposit(accountId.user('x'), 0n, 'k2')).rejects.toThrow(/^amount_cents: /);
    await expect(deposit(accountId.user('x'), -5n, 'k3')).rejects.toThrow(BadTransferError);
    await expect(deposit(accountId.user('x'), 10n ** 13n, 'k4')).rejects.toThrow(/^amount_cents: /);
    await expect(deposit(accountId.user('x'), 1n, '')).rejects.toThrow(/^key: /);
    await expect(deposit(EXTERNAL, 1n, 'k5')).rejects.toThrow(/^to: external cannot pay itself/);
  });

  it('1,000 concurrent withdrawals against a balance covering 500: exactly 500 succeed, never negative', async () => {
    const erin = accountId.user('erin');
    await deposit(erin, 500n * 100n, 'dep-erin');
    const results = await Promise.allSettled(
      Array.from({ length: 1000 }, (_, i) =>
        transfer(db.pool, { key: `wd-erin-${i}`, from: erin, to: EXTERNAL, amountCents: 100n, kind: 'withdrawal' }),
      ),
    );
    const ok = results.filter((r) => r.status === 'fulfilled');
    const refused = results.filter((r) => r.status === 'rejected');
    expect(ok).toHaveLength(500);
    for (const r of refused) expect((r as PromiseRejectedResult).reason).toBeInstanceOf(InsufficientFundsError);
    expect(await balanceOf(db.pool, erin)).toBe(0n);
    const [[min]] = await db.pool.query<RowDataPacket[]>(
      'SELECT MIN(balance_after_cents) AS low, COUNT(*) AS n FROM entries WHERE account_id = ?',
      [erin],
    );
    expect(BigInt(min!['low'])).toBe(0n);
    expect(Number(min!['n'])).toBe(501);
    expect(await audit(db.pool)).toMatchObject({ consistent: true, problems: [] });
  });

  it('the same request twice at once moves money once', async () => {
    const fay = accountId.user('fay');
    const both = await Promise.all([deposit(fay, 300n, 'dep-fay'), deposit(fay, 300n, 'dep-fay')]);
    expect(both[0].transferId).toBe(both[1].transferId);
    expect(both.map((t) => t.replayed).sort()).toEqual([false, true]);
    expect(await balanceOf(db.pool, fay)).toBe(300n);
  });

  it('crossing transfers (deadlock-prone) all complete and the books balance', async () => {
    const [g, h] = [accountId.merchant('g'), accountId.merchant('h')];
    await deposit(g, 10_000n, 'dep-g');
    await deposit(h, 10_000n, 'dep-h');
    await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        i % 2
          ? transfer(db.pool, { key: `gh-${i}`, from: g, to: h, amountCents: 7n, kind: 'redemption' })
          : transfer(db.pool, { key: `hg-${i}`, from: h, to: g, amountCents: 3n, kind: 'redemption' }),
      ),
    );
    expect(await balanceOf(db.pool, g)).toBe(10_000n - 100n * 7n + 100n * 3n);
    expect(await balanceOf(db.pool, h)).toBe(10_000n + 100n * 7n - 100n * 3n);
    expect((await audit(db.pool)).consistent).toBe(true);
  });
});

describe('transferBatch (the hot escrow)', () => {
  const escrow = accountId.escrow('cmpBatch');

  it('pays many winners from one escrow, all or nothing, once per key', async () => {
    await expect(
      transfer(db.pool, {
        key: 'fund-batch',
        from: accountId.operator('budget'),
        to: escrow,
        amountCents: 1n,
        kind: 'funding',
      }),
    ).rejects.toThrow(InsufficientFundsError);
    await deposit(escrow, 10_000n, 'dep-escrow');
    const items = Array.from({ length: 100 }, (_, i) => ({
      key: `award-batch-${i}`,
      to: accountId.user(`winner${i}`),
      amountCents: BigInt(i + 1),
    }));
    // The sum (5,050) is debited once: a batch whose sum is short is refused whole.
    const tooMuch = [...items, { key: 'award-batch-big', to: accountId.user('big'), amountCents: 5000n }];
    await expect(transferBatch(db.pool, { from: escrow, kind: 'award', items: tooMuch })).rejects.toThrow(
      InsufficientFundsError,
    );
    expect(await count('SELECT COUNT(*) AS n FROM transfers WHERE debit_account = ?', [escrow])).toBe(0);

    const paid = await transferBatch(db.pool, { from: escrow, kind: 'award', items });
    expect(paid).toHaveLength(100);
    expect(paid.every((t) => !t.replayed)).toBe(true);
    expect(paid[99]!.fromBalanceCents).toBe(10_000n - 5050n);
    expect(paid[0]!.fromBalanceCents).toBe(10_000n - 1n);
    expect(await balanceOf(db.pool, escrow)).toBe(10_000n - 5050n);
    expect(await balanceOf(db.pool, accountId.user('winner41'))).toBe(42n);

    // A redelivered batch with one new award applies only the new one.
    const more = [...items.slice(0, 10), { key: 'award-batch-new', to: accountId.user('late'), amountCents: 50n }];
    const again = await transferBatch(db.pool, { from: escrow, kind: 'award', items: more });
    expect(again.filter((t) => t.replayed)).toHaveLength(10);
    expect(again[3]).toMatchObject({ transferId: paid[3]!.transferId, toBalanceCents: 4n });
    expect(await balanceOf(db.pool, escrow)).toBe(10_000n - 5050n - 50n);
    expect(await balanceOf(db.pool, accountId.user('winner0'))).toBe(1n);
  });

  it('a batch claimed all new that is not moves an applied key nothing (the unique key refuses it)', async () => {
    const esc = accountId.escrow('cmpClaim');
    await deposit(esc, 1000n, 'dep-claim');
    const first = await transferBatch(db.pool, {
      from: esc,
      kind: 'award',
      items: [{ key: 'claim-1', to: accountId.user('claim1'), amountCents: 100n }],
    });
    const wrong = await transferBatch(db.pool, {
      from: esc,
      kind: 'award',
      allNew: true,
      items: [
        { key: 'claim-1', to: accountId.user('claim1'), amountCents: 100n },
        { key: 'claim-2', to: accountId.user('claim2'), amountCents: 30n },
      ],
    });
    expect(wrong[0]).toMatchObject({ transferId: first[0]!.transferId, replayed: true });
    expect(wrong[1]).toMatchObject({ replayed: false, fromBalanceCents: 870n, toBalanceCents: 30n });
    expect(await balanceOf(db.pool, esc)).toBe(870n);
    expect(await balanceOf(db.pool, accountId.user('claim1'))).toBe(100n);
  });

  it('a payer locked between its payees (lock order by rank, then id) gets every balance right', async () => {
    const m = accountId.user('mid');
    await deposit(m, 500n, 'dep-mid');
    const paid = await transferBatch(db.pool, {
      from: m,
      kind: 'award',
      items: [
        { key: 'mid-z', to: accountId.user('zed'), amountCents: 200n },
        { key: 'mid-a', to: accountId.user('abe'), amountCents: 100n },
        { key: 'mid-z2', to: accountId.user('zed'), amountCents: 50n },
      ],
    });
    expect(paid.map((t) => [t.fromBalanceCents, t.toBalanceCents])).toEqual([
      [300n, 200n],
      [200n, 100n],
      [150n, 250n],
    ]);
    await expect(
      transferBatch(db.pool, {
        from: m,
        kind: 'award',
        items: [
          { key: 'mid-a3', to: accountId.user('abe'), amountCents: 100n },
          { key: 'mid-z3', to: accountId.user('zed'), amountCents: 100n },
        ],
      }),
    ).rejects.toThrow(InsufficientFundsError);
    expect(await balanceOf(db.pool, accountId.user('abe'))).toBe(100n);
    expect((await audit(db.pool)).consistent).toBe(true);
  });

  it('concurrent batches never take the escrow below zero', async () => {
    const hot = accountId.escrow('cmpHot');
    await deposit(hot, 1000n, 'dep-hot');
    const results = await Promise.allSettled(
      Array.from({ length: 30 }, (_, b) =>
        transferBatch(db.pool, {
          from: hot,
          kind: 'award',
          items: Array.from({ length: 10 }, (_, i) => ({
            key: `hot-${b}-${i}`,
            to: accountId.user(`hot${b}-${i}`),
            amountCents: 10n,
          })),
        }),
      ),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(10);
    expect(await balanceOf(db.pool, hot)).toBe(0n);
    expect((await audit(db.pool)).consistent).toBe(true);
  });
});

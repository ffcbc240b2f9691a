/** The audit against the real MySQL: consistent after real transfers, and each corruption found. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { accountId, audit, EXTERNAL, transfer, transferBatch } from '../src/index.js';
import { privateDatabase, type PrivateDatabase } from '../src/testing.js';

let db: PrivateDatabase;
// A fresh database per test: each corruption is found alone.
beforeEach(async () => {
  db = await privateDatabase(4);
  const alice = accountId.user('alice');
  await transfer(db.pool, { key: 'd1', from: EXTERNAL, to: alice, amountCents: 10_000n, kind: 'deposit' });
  await transfer(db.pool, { key: 'f1', from: alice, to: accountId.escrow('c1'), amountCents: 6000n, kind: 'funding' });
  await transferBatch(db.pool, {
    from: accountId.escrow('c1'),
    kind: 'award',
    items: [
      { key: 'a1', to: accountId.user('bob'), amountCents: 2500n },
      { key: 'a2', to: accountId.user('carol'), amountCents: 3500n },
    ],
  });
  await transfer(db.pool, {
    key: 'w1',
    from: accountId.user('bob'),
    to: EXTERNAL,
    amountCents: 1000n,
    kind: 'withdrawal',
  });
});
afterEach(async () => {
  await db?.drop();
});

const corrupt = (sql: string, args: unknown[] = []) => db.pool.query(sql, args);

describe('audit', () => {
  it('is consistent over deposits, funding, a batch of awards and a withdrawal', async () => {
    const r = await audit(db.pool);
    expect(r).toEqual({ consistent: true, accountsChecked: 5, transfersChecked: 5, problems: [] });
  });

  it('finds a balance off by a cent', async () => {
    await corrupt("UPDATE accounts SET balance_cents = balance_cents + 1 WHERE account_id = 'user:carol'");
    const r = await audit(db.pool);
    expect(r.consistent).toBe(false);
    expect(r.problems).toContain('account user:carol balance 3501 cents differs from its entries (3500 cents) by 1');
    expect(r.problems.some((p) => p.startsWith('money inside the system (9001 cents)'))).toBe(true);
  });

  it('finds an unbalanced transfer, naming it', async () => {
    await corrupt(
      "UPDATE entries e JOIN transfers t USING (transfer_id) SET e.amount_cents = 2600 WHERE t.idempotency_key = 'a1' AND e.account_id = 'user:bob'",
    );
    const r = await audit(db.pool);
    expect(r.consistent).toBe(false);
    expect(r.problems.find((p) => p.includes('(a1) does not balance'))).toMatch(
      /^transfer \d+ \(a1\) does not balance: 2500 cents escrow:c1 -> user:bob, but its 2 entries net 100 cents \(debit side ok, credit side wrong\)$/,
    );
  });

  it('finds a transfer missing a side', async () => {
    await corrupt(
      "DELETE e FROM entries e JOIN transfers t USING (transfer_id) WHERE t.idempotency_key = 'w1' AND e.account_id = 'external'",
    );
    const r = await audit(db.pool);
    expect(
      r.problems.some((p) => /^transfer \d+ \(w1\) does not balance: .* its 1 entries net -1000 cents/.test(p)),
    ).toBe(true);
  });

  it('finds a forbidden negative balance', async () => {
    await corrupt("UPDATE accounts SET balance_cents = -5 WHERE account_id = 'user:alice'");
    const r = await audit(db.pool);
    expect(r.problems).toContain('account user:alice is negative: -5 cents');
  });

  it('finds money left in the escrow of a settled campaign', async () => {
    await transfer(db.pool, {
      key: 'd2',
      from: EXTERNAL,
      to: accountId.escrow('c2'),
      amountCents: 40n,
      kind: 'deposit',
    });
    await corrupt(
      "INSERT INTO settlements (campaign_id, owner_id, amount_total_cents, amount_awarded_cents, packets_awarded, refund_cents) VALUES ('c2', 'alice', 40, 0, 0, 40), ('c1', 'alice', 6000, 6000, 2, 0)",
    );
    const r = await audit(db.pool);
    expect(r.problems).toEqual(['escrow:c2 holds 40 cents but the campaign is settled']);
  });

  it('finds money created out of nothing (a transfer and its entries both off)', async () => {
    await corrupt("UPDATE transfers SET amount_cents = 20000 WHERE idempotency_key = 'd1'");
    const r = await audit(db.pool);
    expect(r.problems.some((p) => p.includes('(d1) does not balance'))).toBe(true);
    expect(r.problems).toContain(
      'money inside the system (9000 cents) differs from deposits - withdrawals (19000 cents) by -10000',
    );
  });
});

/**
 * Deposit, Withdraw and AuditLedger over gRPC against the real MySQL (a database of this file's
 * own, so the audit sees only its rows) and Redis (the switches in a Redis db of its own).
 */
import { Metadata, status } from '@grpc/grpc-js';
import { setSwitch, Switches, createLogger, pollUntil } from '@redpacket/lib';
import { call, requireRedis, testRedisDb } from '@redpacket/lib/testing';
import type {
  Account,
  AccountServiceClient,
  AuditLedgerRequest,
  AuditLedgerResponse,
  DepositRequest,
  WithdrawRequest,
} from '@redpacket/proto';
import type { Redis } from 'ioredis';
import type { RowDataPacket } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { privateDatabase, type PrivateDatabase } from '@redpacket/ledger/testing';
import { accountApi, bearer, startHarness, testSigner, user, type Harness } from './harness.js';

const SWITCHES_DB = testRedisDb(9);

let db: PrivateDatabase;
let h: Harness;
let switchesRedis: Redis;
let switches: Switches;
let alice: string;
let aliceMd: Metadata;

const money = (c: AccountServiceClient) => ({
  deposit: (req: DepositRequest, md: Metadata) => call<DepositRequest, Account>(c.deposit, c, req, md),
  withdraw: (req: WithdrawRequest, md: Metadata) => call<WithdrawRequest, Account>(c.withdraw, c, req, md),
  audit: (md: Metadata) => call<AuditLedgerRequest, AuditLedgerResponse>(c.auditLedger, c, {}, md),
});

const codeOf = (p: Promise<unknown>): Promise<{ code?: number; details?: string }> =>
  p.then(
    () => ({}),
    (e: { code?: number; details?: string }) => e,
  );

beforeAll(async () => {
  db = await privateDatabase(4);
  switchesRedis = await requireRedis(SWITCHES_DB);
  await setSwitch(switchesRedis, 'spending.paused', false);
  switches = new Switches(switchesRedis, createLogger('test', 'silent'), { refreshMs: 200 });
  await switches.start();
  h = await startHarness({ mysqlUrl: db.url, deps: { switches } });
  alice = `${h.prefix}alice`;
  await accountApi(h.accounts).registerUser({ user: user(alice) }, h.adminMd);
  aliceMd = bearer(await testSigner().sign({ userId: alice }));
});

afterAll(async () => {
  switches?.stop();
  await setSwitch(switchesRedis, 'spending.paused', false);
  switchesRedis?.disconnect();
  await h?.close();
  await db?.drop();
});

describe('Deposit', () => {
  it('brings money in from external, once per request_id', async () => {
    const api = money(h.accounts);
    const first = await api.deposit(
      { accountId: `user:${alice}`, amountCents: 10_000n, requestId: 'dep-1', note: 'welcome budget' },
      h.adminMd,
    );
    expect(first).toMatchObject({ userId: alice, accountId: `user:${alice}`, balanceCents: 10_000n });
    await api.deposit({ accountId: `user:${alice}`, amountCents: 5n, requestId: 'dep-2', note: '' }, h.adminMd);
    const again = await api.deposit(
      { accountId: `user:${alice}`, amountCents: 10_000n, requestId: 'dep-1', note: 'welcome budget' },
      h.adminMd,
    );
    expect(again.balanceCents).toBe(10_000n); // the first answer, not today's 10,005
    const [rows] = await db.pool.query<RowDataPacket[]>('SELECT balance_cents FROM accounts WHERE account_id = ?', [
      `user:${alice}`,
    ]);
    expect(rows[0]?.['balance_cents']).toBe('10005');
    const op = await api.deposit(
      { accountId: 'operator:spring-budget', amountCents: 1n, requestId: 'dep-op', note: '' },
      h.adminMd,
    );
    expect(op).toMatchObject({ userId: '', accountId: 'operator:spring-budget', balanceCents: 1n });
  });

  it('refuses bad input naming the field, and a user caller', async () => {
    const api = money(h.accounts);
    const ok = { accountId: `user:${alice}`, amountCents: 1n, requestId: 'dep-bad', note: '' };
    const cases: [Partial<DepositRequest>, RegExp][] = [
      [{ accountId: 'bank:x' }, /^account_id: /],
      [{ accountId: 'escrow:c1' }, /^account_id: deposits go to/],
      [{ accountId: 'external' }, /^account_id: /],
      [{ amountCents: 0n }, /^amount_cents: must be between 1 and/],
      [{ amountCents: -1n }, /^amount_cents: /],
      [{ amountCents: 10n ** 13n }, /^amount_cents: /],
      [{ requestId: '' }, /^request_id: is required/],
      [{ note: 'x'.repeat(256) }, /^note: /],
      [{ amountCents: 2n, requestId: 'dep-1' }, /^request_id: idempotency key "deposit:dep-1" was already used/],
    ];
    for (const [bad, message] of cases) {
      const err = await codeOf(api.deposit({ ...ok, ...bad }, h.adminMd));
      expect(
        err.code,
        JSON.stringify(bad, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v)),
      ).toBe(status.INVALID_ARGUMENT);
      expect(err.details).toMatch(message);
    }
    expect((await codeOf(api.deposit({ ...ok, accountId: `user:${h.prefix}nobody` }, h.adminMd))).code).toBe(
      status.NOT_FOUND,
    );
    expect((await codeOf(api.deposit(ok, aliceMd))).code).toBe(status.PERMISSION_DENIED);
    const [rows] = await db.pool.query<RowDataPacket[]>(
      "SELECT COUNT(*) AS n FROM transfers WHERE idempotency_key = 'deposit:dep-bad'",
    );
    expect(Number(rows[0]?.['n'])).toBe(0);
  });
});

describe('Withdraw', () => {
  it('takes the caller’s own balance out, once per request_id; a short balance is FAILED_PRECONDITION', async () => {
    const api = money(h.accounts);
    const bob = `${h.prefix}bob`;
    await accountApi(h.accounts).registerUser({ user: user(bob) }, h.adminMd);
    const bobMd = bearer(await testSigner().sign({ userId: bob }));
    await api.deposit({ accountId: `user:${bob}`, amountCents: 300n, requestId: 'dep-bob', note: '' }, h.adminMd);
    const w = await api.withdraw({ amountCents: 200n, requestId: 'w-1' }, bobMd);
    expect(w).toMatchObject({ userId: bob, accountId: `user:${bob}`, balanceCents: 100n });
    expect((await api.withdraw({ amountCents: 200n, requestId: 'w-1' }, bobMd)).balanceCents).toBe(100n);
    const short = await codeOf(api.withdraw({ amountCents: 101n, requestId: 'w-2' }, bobMd));
    expect(short.code).toBe(status.FAILED_PRECONDITION);
    expect(short.details).toBe(`insufficient funds: user:${bob} holds 100 cents, 101 needed; nothing moved`);
    // The same request id of another user is another withdrawal.
    const other = await codeOf(api.withdraw({ amountCents: 200n, requestId: 'w-1' }, aliceMd));
    expect(other.code).toBeUndefined();
    expect((await codeOf(api.withdraw({ amountCents: 0n, requestId: 'w-3' }, bobMd))).code).toBe(
      status.INVALID_ARGUMENT,
    );
    expect((await codeOf(api.withdraw({ amountCents: 1n, requestId: '' }, bobMd))).details).toMatch(/^request_id: /);
    expect((await codeOf(api.withdraw({ amountCents: 1n, requestId: 'w-4' }, new Metadata()))).code).toBe(
      status.UNAUTHENTICATED,
    );
  });

  it('1,000 concurrent Withdraw calls against a balance covering 500: exactly 500 succeed, the rest FAILED_PRECONDITION', async () => {
    const api = money(h.accounts);
    const carol = `${h.prefix}carol`;
    await accountApi(h.accounts).registerUser({ user: user(carol) }, h.adminMd);
    const md = bearer(await testSigner().sign({ userId: carol }));
    await api.deposit(
      { accountId: `user:${carol}`, amountCents: 500n * 7n, requestId: 'dep-carol', note: '' },
      h.adminMd,
    );
    const results = await Promise.all(
      Array.from({ length: 1000 }, (_, i) => codeOf(api.withdraw({ amountCents: 7n, requestId: `c-${i}` }, md))),
    );
    expect(results.filter((r) => r.code === undefined)).toHaveLength(500);
    expect(results.filter((r) => r.code === status.FAILED_PRECONDITION)).toHaveLength(500);
    const [rows] = await db.pool.query<RowDataPacket[]>(
      'SELECT a.balance_cents, MIN(e.balance_after_cents) AS low FROM accounts a JOIN entries e USING (account_id) WHERE a.account_id = ? GROUP BY a.balance_cents',
      [`user:${carol}`],
    );
    expect(rows[0]).toMatchObject({ balance_cents: '0', low: '0' });
    expect((await api.audit(h.adminMd)).consistent).toBe(true);
  });

  it('answers UNAVAILABLE within 2 s of spending.paused, moving nothing, and serves again when off', async () => {
    const api = money(h.accounts);
    const before = (await api.audit(h.adminMd)).transfersChecked;
    const t0 = Date.now();
    await setSwitch(switchesRedis, 'spending.paused', true);
    let moved = 0n; // withdrawals served before the switch reached account-svc
    const err = await pollUntil(
      'Withdraw to answer UNAVAILABLE',
      async () => {
        const e = await codeOf(api.withdraw({ amountCents: 1n, requestId: `paused-${Date.now()}` }, aliceMd));
        if (e.code === undefined) moved++;
        return e.code === status.UNAVAILABLE ? e : undefined;
      },
      2000,
      50,
    );
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(err.details).toMatch(/spending is paused .*spending\.paused/);
    expect((await codeOf(api.withdraw({ amountCents: 1n, requestId: 'during-pause' }, aliceMd))).code).toBe(
      status.UNAVAILABLE,
    );
    await setSwitch(switchesRedis, 'spending.paused', false);
    await pollUntil(
      'Withdraw to serve again',
      async () =>
        (await codeOf(api.withdraw({ amountCents: 1n, requestId: 'during-pause' }, aliceMd))).code === undefined,
      2000,
      50,
    );
    // The paused call moved nothing: retried once the switch is off, it moved its cent once.
    expect((await api.audit(h.adminMd)).transfersChecked).toBe(before + moved + 1n);
  });
});

describe('AuditLedger', () => {
  it('is consistent over what the calls wrote, admin only, and reports a corrupted balance', async () => {
    const api = money(h.accounts);
    const r = await api.audit(h.adminMd);
    expect(r).toMatchObject({ consistent: true, problems: [] });
    expect(r.accountsChecked).toBeGreaterThanOrEqual(4n);
    expect((await codeOf(api.audit(aliceMd))).code).toBe(status.PERMISSION_DENIED);
    await db.pool.query(
      "UPDATE accounts SET balance_cents = balance_cents - 1 WHERE account_id = 'operator:spring-budget'",
    );
    const bad = await api.audit(h.adminMd);
    expect(bad.consistent).toBe(false);
    expect(bad.problems).toContain(
      'account operator:spring-budget balance 0 cents differs from its entries (1 cents) by -1',
    );
    await db.pool.query(
      "UPDATE accounts SET balance_cents = balance_cents + 1 WHERE account_id = 'operator:spring-budget'",
    );
  });
});

/**
 * `redpacket ledger audit|deposit`: the real binary against an AccountService started here on
 * the real MySQL, in a database of this file's own (the audit sees only its rows).
 */
import { createLogger, startServer, type RunningServer } from '@redpacket/lib';
import { requireRedis, testSigner } from '@redpacket/lib/testing';
import { EXTERNAL, transfer } from '@redpacket/ledger';
import { privateDatabase, type PrivateDatabase } from '@redpacket/ledger/testing';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAccountServer } from '../../account-svc/src/server.js';
import { cli, cliJson } from './helpers.js';

const log = createLogger('test', 'silent');
let db: PrivateDatabase;
let redis: Redis;
let server: RunningServer;
let env: Record<string, string>;

beforeAll(async () => {
  db = await privateDatabase(4);
  redis = await requireRedis();
  server = await startServer({
    services: createAccountServer({
      pool: db.pool,
      redis,
      tokens: testSigner().verifier(),
      log,
      signer: testSigner().signer,
      passwordCost: 4,
    }),
    host: '127.0.0.1',
    port: 0,
    log,
  });
  env = { ACCOUNT_ADDR: `127.0.0.1:${server.port}` };
});

afterAll(async () => {
  await server?.shutdown(1000);
  redis?.disconnect();
  await db?.drop();
});

interface AuditJson {
  consistent: boolean;
  accountsChecked: string;
  transfersChecked: string;
  problems: string[];
}

describe('redpacket ledger', () => {
  it('deposits once per --request-id, and the audit proves the books balance', async () => {
    const first = await cliJson<{ accountId: string; balanceCents: string }>(
      ['ledger', 'deposit', 'operator:gala', '1000.50', '--request-id', 'budget-1', '--note', 'gala budget'],
      env,
    );
    expect(first).toMatchObject({ accountId: 'operator:gala', balanceCents: '100050' });
    const again = await cli(['ledger', 'deposit', 'operator:gala', '1000.50', '--request-id', 'budget-1'], env);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/balance\s*│\s*¥1,000\.50/);

    const human = await cli(['ledger', 'audit'], env);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/consistent\s*│\s*yes/);
    expect(await cliJson<AuditJson>(['ledger', 'audit'], env)).toEqual({
      consistent: true,
      accountsChecked: '2',
      transfersChecked: '1',
      problems: [],
    });
  });

  it('users show prints the ledger balance of user:<id>, which the awards count does not change', async () => {
    await db.pool.query("INSERT INTO users (user_id, display_name, role) VALUES ('wen', 'Wen', 'user')");
    await transfer(db.pool, { key: 'wen-in', kind: 'deposit', from: EXTERNAL, to: 'user:wen', amountCents: 1234n });
    await transfer(db.pool, { key: 'wen-out', kind: 'withdrawal', from: 'user:wen', to: EXTERNAL, amountCents: 234n });
    const human = await cli(['users', 'show', 'wen'], env);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/balance\s*│\s*¥10\.00/);
    expect(human.stdout).toMatch(/awards\s*│\s*0/);
    expect(await cliJson(['users', 'show', 'wen'], env)).toMatchObject({ balanceCents: '1000', awardsCount: '0' });
  });

  it('refuses bad input: no --request-id (exit 2), an escrow account (exit 2, naming the field)', async () => {
    const noId = await cli(['ledger', 'deposit', 'operator:gala', '5'], env);
    expect(noId.code).toBe(2);
    expect(noId.stderr).toMatch(/--request-id/);
    const escrow = await cli(['ledger', 'deposit', 'escrow:c1', '5', '--request-id', 'e1'], env);
    expect(escrow.code).toBe(2);
    expect(escrow.stderr).toMatch(/account_id: deposits go to/);
  });

  it('exits 7 and lists each problem when the books do not balance', async () => {
    await db.pool.query("UPDATE accounts SET balance_cents = balance_cents + 1 WHERE account_id = 'operator:gala'");
    try {
      const r = await cli(['ledger', 'audit'], env);
      expect(r.code).toBe(7);
      expect(r.stdout).toMatch(/consistent\s*│\s*NO/);
      expect(r.stdout).toContain(
        'account operator:gala balance 100051 cents differs from its entries (100050 cents) by 1',
      );
      expect(r.stderr).toMatch(/the ledger is not consistent: 3 problem\(s\)/);
      const j = await cli(['--json', 'ledger', 'audit'], env);
      expect(j.code).toBe(7);
      expect((JSON.parse(j.stdout) as AuditJson).problems).toHaveLength(3);
    } finally {
      await db.pool.query("UPDATE accounts SET balance_cents = balance_cents - 1 WHERE account_id = 'operator:gala'");
    }
  });
});

/**
 * The `redpacket` binary against live services it does not mock: account-svc spawned from its
 * built main.js (users, token --password), and grab-svc spawned with a relay and a gift consumer
 * scoped to one campaign delivering its wins through RabbitMQ into MySQL (settle, reconcile).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { credentials } from '@grpc/grpc-js';
import { depositBudget } from '@redpacket/ledger/testing';
import type { Pool } from '@redpacket/db';
import { keys } from '@redpacket/lib';
import { bearer, call, requireRedis, testSigner, TEST_MYSQL_URL, TEST_REDIS_URL } from '@redpacket/lib/testing';
import { freePort, spawnNode, type Child } from '@redpacket/loadgen';
import { GrabServiceClient, Outcome, type GrabRequest, type GrabResponse } from '@redpacket/proto';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  awardCount,
  dropCampaign,
  dropTopology,
  requireMysql,
  requireTopology,
  testGift,
  testRelay,
} from '../../gift-svc/test/harness.js';
import { cli, cliJson, pollUntil, startGrabSvc, type GrabServer } from './helpers.js';

const ACCOUNT_MAIN = fileURLToPath(new URL('../../account-svc/dist/src/main.js', import.meta.url));
const prefix = `cli${randomBytes(4).toString('hex')}-`;
const verifier = testSigner().verifier();

/**
 * account-svc resyncs the whole eligibility mirror at start and drops entries of users MySQL does
 * not know, which would wipe other tests' rp:blocked entries in database 0; this test's service
 * gets a Redis database of its own (account-svc's main.test.ts uses 15).
 */
const accountRedisUrl = (): string => {
  const u = new URL(TEST_REDIS_URL);
  u.pathname = '/14';
  return u.toString();
};

let pool: Pool;
beforeAll(async () => {
  pool = await requireMysql();
});
afterAll(async () => {
  await pool?.end();
});

describe('redpacket users and token against a spawned account-svc', () => {
  let account: Child | undefined;
  let redis: Redis;
  let env: Record<string, string>;
  const dir = mkdtempSync(join(tmpdir(), 'redpacket-live-'));
  const ids = Array.from({ length: 50 }, (_, i) => `${prefix}u${i}`);

  beforeAll(async () => {
    redis = await requireRedis(accountRedisUrl());
    const port = await freePort();
    account = spawnNode(ACCOUNT_MAIN, [], {
      GRPC_PORT: String(port),
      ...testSigner().env,
      REDIS_URL: accountRedisUrl(),
      MYSQL_URL: TEST_MYSQL_URL,
      JWKS_PORT: 'off',
      LOG_LEVEL: 'info',
      // bcrypt at its lowest cost: 50 passwords at the default cost take seconds
      PASSWORD_HASH_COST: '4',
    });
    await account.waitFor(/gRPC server listening/, 30_000);
    env = { ACCOUNT_ADDR: `127.0.0.1:${port}` };
  });

  afterAll(async () => {
    await account?.stop();
    const like = `${prefix}%`;
    await pool.query('DELETE FROM users WHERE user_id LIKE ?', [like]);
    await pool.query('DELETE FROM user_block_events WHERE user_id LIKE ?', [like]);
    await pool.query('DELETE FROM login_codes WHERE user_id LIKE ?', [like]);
    if (redis) {
      await redis.srem(keys.blocked, ...ids);
      await redis.hdel(keys.risk, ...ids);
      redis.disconnect();
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('users import creates every valid row once and counts duplicates and rejects', async () => {
    const file = join(dir, 'users.csv');
    const rows = ['user_id,display_name,password,risk_score'];
    ids.forEach((id, i) => rows.push(`${id},User ${i},pw-secret-${i},${i % 7}`));
    rows.push(`${ids[0]},Again,pw-secret-0,0`); // duplicate: counted by account-svc
    rows.push('bad id,Bad,pw-secret-x,1'); // refused by the CLI before sending
    rows.push(`${prefix}risky,Risky,pw-secret-r,150`); // refused by account-svc (risk_score 0-100)
    writeFileSync(file, `${rows.join('\n')}\n`);

    const r = await cliJson<{
      sent: number;
      received: string;
      created: string;
      duplicates: string;
      rejected: string;
      errors: string[];
      rejectedLocally: number;
      localErrors: string[];
    }>(['users', 'import', file, '--batch-size', '20'], env);
    expect(r).toMatchObject({
      sent: 52,
      received: '52',
      created: '50',
      duplicates: '1',
      rejected: '1',
      rejectedLocally: 1,
    });
    expect(r.localErrors[0]).toContain('line 53: user_id "bad id"');
    expect(r.errors.join('\n')).toContain('risk_score');
    const [[row]] = (await pool.query('SELECT COUNT(*) AS n FROM users WHERE user_id LIKE ?', [`${prefix}%`])) as [
      { n: number }[],
      unknown,
    ];
    expect(Number(row!.n)).toBe(50);
  });

  it('users show, block and unblock, with the block mirrored into Redis', async () => {
    const id = ids[3]!;
    const shown = await cliJson<Record<string, unknown>>(['users', 'show', id], env);
    expect(shown).toMatchObject({ userId: id, displayName: 'User 3', riskScore: 3, blocked: false });

    const blocked = await cliJson<Record<string, unknown>>(['users', 'block', id, '--reason', 'scripted clicks'], env);
    expect(blocked).toMatchObject({ userId: id, blocked: true, blockReason: 'scripted clicks' });
    expect(await redis.sismember(keys.blocked, id)).toBe(1);
    const after = await cliJson<Record<string, unknown>>(['users', 'show', id], env);
    expect(after).toMatchObject({ userId: id, blocked: true, blockReason: 'scripted clicks' });
    const human = await cli(['users', 'show', id], env);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/blocked\s+│ yes, .*\(scripted clicks\)/);

    const unblocked = await cliJson<Record<string, unknown>>(['users', 'unblock', id], env);
    expect(unblocked).toMatchObject({ userId: id, blocked: false });
    expect(await redis.sismember(keys.blocked, id)).toBe(0);
    expect(await cliJson<Record<string, unknown>>(['users', 'show', id], env)).toMatchObject({ blocked: false });
  });

  it('users show exits 4 for an unknown user', async () => {
    const r = await cli(['users', 'show', `${prefix}nobody`], env);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/not found/i);
    expect(r.stdout).toBe('');
  });

  it('token --password gets a token from IssueToken, and refuses a wrong password', async () => {
    const id = ids[7]!;
    const j = await cliJson<{ userId: string; token: string; source: string; expiresAt: string }>(
      ['token', id, '--password', 'pw-secret-7', '--ttl', '10m'],
      env,
    );
    expect(j).toMatchObject({ userId: id, source: 'account-svc' });
    const payload = JSON.parse(Buffer.from(j.token.split('.')[1]!, 'base64url').toString()) as { sub: string };
    expect(payload.sub).toBe(id);
    expect(await verifier.verify(j.token)).toMatchObject({ userId: id, role: 'user' });
    const ttl = Date.parse(j.expiresAt) - Date.now();
    expect(ttl).toBeGreaterThan(9 * 60_000);
    expect(ttl).toBeLessThanOrEqual(10 * 60_000);

    const plainOut = await cli(['token', id, '--password', 'pw-secret-7'], env);
    expect(plainOut.code).toBe(0);
    expect(await verifier.verify(plainOut.stdout.trim())).toMatchObject({ userId: id });

    const wrong = await cli(['token', id, '--password', 'not-the-password'], env);
    expect(wrong.code).toBe(5);
    expect(wrong.stdout).toBe('');
  });

  it('users code prints a one-time code that token --login-code exchanges once', async () => {
    // Pre-opened without a password: a login code is its only way to a first token.
    const id = `${prefix}kiosk`;
    await pool.query('INSERT INTO users (user_id) VALUES (?)', [id]);
    const out = await cli(['users', 'code', id, '--ttl', '10m'], env);
    expect(out.code).toBe(0);
    const code = out.stdout.trim();
    expect(code).toMatch(/^[A-Za-z0-9_-]{22,}$/);

    const t = await cliJson<{ token: string; source: string }>(['token', id, '--login-code', code], env);
    expect(t.source).toBe('account-svc');
    expect(await verifier.verify(t.token)).toMatchObject({ userId: id, role: 'user' });
    const reused = await cli(['token', id, '--login-code', code], env);
    expect(reused.code).toBe(5);
    expect(reused.stdout).toBe('');

    const j = await cliJson<{ userId: string; code: string; expiresAt: string }>(
      ['users', 'code', id, '--ttl', '1h'],
      env,
    );
    expect(j.userId).toBe(id);
    expect(j.code).not.toBe(code);
    const ttl = Date.parse(j.expiresAt) - Date.now();
    expect(ttl).toBeGreaterThan(59 * 60_000);
    expect(ttl).toBeLessThanOrEqual(60 * 60_000);
    const unknown = await cli(['users', 'code', `${prefix}nobody`], env);
    expect(unknown.code).toBe(4);
  });
});

describe('redpacket campaign settle and reconcile, with wins delivered through RabbitMQ into MySQL', () => {
  let g: GrabServer;
  let grab: GrabServiceClient;
  let redis: Redis;
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    g = await startGrabSvc();
    redis = await requireRedis();
    grab = new GrabServiceClient(g.address, credentials.createInsecure());
  });
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
    grab?.close();
    redis?.disconnect();
    await g?.stop();
  });

  const grabAs = async (campaignId: string, user: string): Promise<GrabResponse> =>
    call<GrabRequest, GrabResponse>(
      grab.grab,
      grab,
      { campaignId, requestId: `r-${user}` },
      bearer(await testSigner().sign({ userId: user })),
    );

  it('settle waits for delivery (exit 6), then reconcile is consistent and settle refunds the rest once', async () => {
    await depositBudget(pool, `${prefix}owner`, 1234);
    const c = await cliJson<{ campaignId: string; totalCents: string; ownerId: string }>(
      [
        'campaign',
        'create',
        '--name',
        'cli live settle',
        '--total',
        '12.34',
        '--packets',
        '8',
        '--owner',
        `${prefix}owner`,
      ],
      g.env,
    );
    const id = g.track(c.campaignId);
    cleanups.push(() => dropCampaign(redis, pool, id));
    expect(c.totalCents).toBe('1234');

    const answers = await Promise.all(Array.from({ length: 5 }, (_, i) => grabAs(id, `${prefix}g${i}`)));
    expect(answers.map((a) => a.outcome)).toEqual(Array(5).fill(Outcome.WON));
    const wonCents = answers.reduce((s, a) => s + a.amountCents, 0n);

    const early = await cli(['campaign', 'settle', id], g.env);
    expect(early.code).toBe(6);
    expect(early.stderr).toContain('not possible now');

    const closed = await cliJson<{ state: string }>(['campaign', 'close', id, '--reason', 'cli live test'], g.env);
    expect(closed.state).toBe('CAMPAIGN_STATE_ENDED');

    const inFlight = await cli(['campaign', 'settle', id], g.env);
    expect(inFlight.code).toBe(6);
    expect(inFlight.stderr).toMatch(/not possible now: 5 win\(s\) still in flight/);

    const undelivered = await cli(['--json', 'campaign', 'reconcile', id], g.env);
    expect(undelivered.code).toBe(7);
    const before = JSON.parse(undelivered.stdout) as { consistent: boolean; missingInMysql: string[] };
    expect(before.consistent).toBe(false);
    expect(before.missingInMysql).toHaveLength(5);

    // Deliver: the outbox relay and a gift consumer, on a topology and a campaign of this test's own.
    const t = await requireTopology();
    cleanups.push(() => dropTopology(t));
    const relay = await testRelay(t, [id]);
    const gift = await testGift(t, pool);
    try {
      await pollUntil('the 5 wins in MySQL', async () => (await awardCount(pool, id)).n === 5, 20_000, 50);
    } finally {
      await relay.stop();
      await gift.stop();
    }

    const rec = await cliJson<{
      consistent: boolean;
      differences: string[];
      packetsClaimedRedis: number;
      packetsDeliveredMysql: number;
      amountDeliveredMysqlCents: string;
      amountRemainingRedisCents: string;
    }>(['campaign', 'reconcile', id], g.env);
    expect(rec).toMatchObject({
      consistent: true,
      differences: [],
      packetsClaimedRedis: 5,
      packetsDeliveredMysql: 5,
      amountDeliveredMysqlCents: String(wonCents),
      amountRemainingRedisCents: String(1234n - wonCents),
    });

    interface SettlementJson {
      ownerId: string;
      amountTotalCents: string;
      packetsAwarded: number;
      amountAwardedCents: string;
      refundCents: string;
      alreadySettled: boolean;
    }
    const first = await cliJson<SettlementJson>(['campaign', 'settle', id], g.env);
    expect(first).toMatchObject({
      ownerId: `${prefix}owner`,
      amountTotalCents: '1234',
      packetsAwarded: 5,
      amountAwardedCents: String(wonCents),
      alreadySettled: false,
    });
    expect(BigInt(first.amountAwardedCents) + BigInt(first.refundCents)).toBe(1234n);
    const second = await cliJson<SettlementJson>(['campaign', 'settle', id], g.env);
    expect(second).toEqual({ ...first, alreadySettled: true });

    const human = await cli(['campaign', 'reconcile', id], g.env);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/consistent\s+│ yes/);
  });
});

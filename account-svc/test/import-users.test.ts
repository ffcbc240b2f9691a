import { status } from '@grpc/grpc-js';

import { grpcError } from '@redpacket/lib/testing';
import type { UserRecord } from '@redpacket/proto';
import { describe, expect, it } from 'vitest';
import { accountApi, bearer, importUsers, useHarness, testSigner, user, type Harness } from './harness.js';

let h: Harness;
useHarness({}, (x) => (h = x));

const count = async (sql: string, params: unknown[]): Promise<number> => {
  const [rows] = await h.pool.query(sql, params);
  return Number((rows as { n: number }[])[0]!.n);
};

describe('ImportUsers (client stream)', () => {
  it('pre-opens 100,000 users in batches; duplicates and bad records are counted, not fatal', async () => {
    const N = 100_000;
    const api = accountApi(h.accounts);
    const existing = [0, 1, 2, 3, 4].map((i) => `${h.prefix}u${i * 20_000}`);
    for (const id of existing) await api.registerUser({ user: user(id, { riskScore: 7 }) }, h.adminMd);

    function* records(): Generator<UserRecord> {
      for (let i = 0; i < N; i++) {
        const extra: Partial<UserRecord> = {};
        if (i % 1000 === 0) extra.riskScore = 60; // 100 risky accounts
        if (i % 5000 === 1) extra.password = `secret-${i}`; // 20 with a password
        yield user(`${h.prefix}u${i}`, extra);
        if (i % 10_000 === 5) yield user(`${h.prefix}u${i}`); // 10 repeated within the stream
      }
      for (let i = 0; i < 3; i++) yield user(`bad id ${i}`);
      yield user(`${h.prefix}risky`, { riskScore: 500 });
    }
    const started = performance.now();
    const res = await importUsers(h.accounts, h.adminMd, records());
    const ms = performance.now() - started;
    console.log(`ImportUsers: ${N} users in ${ms.toFixed(0)} ms = ${Math.round(N / (ms / 1000))} users/s (noisy)`);

    expect(res.received).toBe(BigInt(N + 10 + 4));
    expect(res.rejected).toBe(4n);
    expect(res.duplicates).toBe(15n);
    expect(res.created).toBe(BigInt(N - 5));
    expect(res.errors.some((e) => e.includes('Duplicate entry'))).toBe(true);
    expect(res.errors.some((e) => e.includes('user_id'))).toBe(true);
    expect(await count('SELECT COUNT(*) AS n FROM users WHERE user_id LIKE ?', [`${h.prefix}u%`])).toBe(N);

    // A duplicate keeps what it had: the import did not overwrite the earlier score of 7 with 60.
    expect(await h.redis.hget('rp:risk', `${h.prefix}u0`)).toBe('7');
    expect(await h.redis.hget('rp:risk', `${h.prefix}u1000`)).toBe('60');
    let risky = 0;
    for (let i = 0; i < N; i += 1000) if ((await h.redis.hget('rp:risk', `${h.prefix}u${i}`)) !== null) risky++;
    expect(risky).toBe(100);

    // Passwords were hashed, and only those that were given.
    const t = await api.issueToken({ userId: `${h.prefix}u5001`, password: 'secret-5001', ttlSeconds: 60 }, bearer(''));
    expect((await h.tokens.verify(t.token)).userId).toBe(`${h.prefix}u5001`);
    expect(
      await count('SELECT COUNT(*) AS n FROM users WHERE user_id LIKE ? AND password_hash IS NOT NULL', [
        `${h.prefix}u%`,
      ]),
    ).toBe(20);
  });

  it('needs an admin token', async () => {
    const userToken = await testSigner().sign({ userId: `${h.prefix}someone` });
    const denied = await grpcError(importUsers(h.accounts, bearer(userToken), [user(`${h.prefix}x`)]));
    expect(denied.code).toBe(status.PERMISSION_DENIED);
    const anonymous = await grpcError(importUsers(h.accounts, bearer('not-a-token'), [user(`${h.prefix}x`)]));
    expect(anonymous.code).toBe(status.UNAUTHENTICATED);
    expect(await count('SELECT COUNT(*) AS n FROM users WHERE user_id = ?', [`${h.prefix}x`])).toBe(0);
  });
});

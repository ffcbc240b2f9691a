import { Metadata, status } from '@grpc/grpc-js';

import { grpcError, metricValue } from '@redpacket/lib/testing';
import { importJWK, jwtVerify } from 'jose';
import { accountId, EXTERNAL, transfer } from '@redpacket/ledger';
import { describe, expect, it } from 'vitest';
import { resyncMirror } from '../src/eligibility-mirror.js';
import { JWKS_PATH, startJwksServer } from '../src/jwks-http.js';
import { accountApi, bearer, useHarness, testSigner, user, type Harness } from './harness.js';

let h: Harness;
let api: ReturnType<typeof accountApi>;
useHarness({}, (x) => {
  h = x;
  api = accountApi(x.accounts);
});

const register = (userId: string, extra = {}) => api.registerUser({ user: user(userId, extra) }, h.adminMd);
const issue = (userId: string, password: string) => api.issueToken({ userId, password, ttlSeconds: 0 }, new Metadata());

describe('AccountService over gRPC', () => {
  it('registers, issues a token with opened_at and role, and reads the account', async () => {
    const id = `${h.prefix}alice`;
    const before = Date.now();
    const acc = await register(id, { displayName: ' Alice ', password: 'correct horse' });
    expect(acc).toMatchObject({ userId: id, displayName: 'Alice', blocked: false, role: 'user', hasPassword: true });
    expect(acc.balanceCents).toBe(0n);
    expect(acc.createdAt!.getTime()).toBeGreaterThanOrEqual(before - 1000);

    const [stored] = await h.pool.query('SELECT password_hash FROM users WHERE user_id = ?', [id]);
    const hash = (stored as { password_hash: string }[])[0]!.password_hash;
    expect(hash).toMatch(/^\$2[aby]\$04\$/);
    expect(hash).not.toContain('correct horse');

    const t = await issue(id, 'correct horse');
    expect(t.tokenType).toBe('Bearer');
    const who = await h.tokens.verify(t.token);
    expect(who.userId).toBe(id);
    expect(who.role).toBe('user');
    // opened_at is the creation time rounded up to the second.
    expect(who.openedAtMs).toBe(Math.ceil(acc.createdAt!.getTime() / 1000) * 1000);
    expect(t.expiresAt!.getTime() - Date.now()).toBeGreaterThan(3500_000);

    const mine = await api.getAccount({ userId: '' }, bearer(t.token));
    expect(mine.userId).toBe(id);
    const other = await grpcError(api.getAccount({ userId: `${h.prefix}someone` }, bearer(t.token)));
    expect(other.code).toBe(status.PERMISSION_DENIED);
  });

  it('a merchant account gets merchant tokens (RedeemPacket); an unknown role is refused, nothing written', async () => {
    const shop = `${h.prefix}shop`;
    expect(await register(shop, { password: 'counter top 1', role: 'merchant' })).toMatchObject({ role: 'merchant' });
    const who = await h.tokens.verify((await issue(shop, 'counter top 1')).token);
    expect(who).toMatchObject({ userId: shop, role: 'merchant' });
    await h.tokens.merchant(bearer((await issue(shop, 'counter top 1')).token));
    const bad = await grpcError(register(`${h.prefix}boss`, { password: 'counter top 1', role: 'owner' }));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect(bad.details).toContain('role');
    const [rows] = await h.pool.query('SELECT COUNT(*) AS n FROM users WHERE user_id = ?', [`${h.prefix}boss`]);
    expect(Number((rows as { n: number }[])[0]!.n)).toBe(0);
  });

  it('reports balance_cents from the ledger (user:<id>) and awards_count from the awards', async () => {
    const id = `${h.prefix}rich`;
    await register(id);
    const packets = [`${h.prefix}p1`, `${h.prefix}p2`].map((p) => p.slice(-32));
    const escrow = accountId.escrow(`${h.prefix}c`);
    try {
      expect((await api.getAccount({ userId: id }, h.adminMd)).balanceCents).toBe(0n);
      // two awards as gift-svc writes them: the rows (db/migrations/0200_awards.sql) and their
      // transfers escrow -> user; then part of the money leaves, which the awards alone would miss
      await transfer(h.pool, {
        key: `${h.prefix}fund`,
        kind: 'deposit',
        from: EXTERNAL,
        to: escrow,
        amountCents: 5000n,
      });
      for (const [i, packetId] of packets.entries()) {
        await h.pool.query(
          'INSERT INTO awards (packet_id, campaign_id, user_id, amount_cents, request_id, won_at) VALUES (?, ?, ?, ?, ?, NOW(3))',
          [packetId, `${h.prefix}c${i}`, id, 1234 + i, `r${i}`],
        );
        await transfer(h.pool, {
          key: `${h.prefix}award:${packetId}`,
          kind: 'award',
          from: escrow,
          to: accountId.user(id),
          amountCents: BigInt(1234 + i),
        });
      }
      const won = await api.getAccount({ userId: id }, h.adminMd);
      expect(won.balanceCents).toBe(2469n);
      expect(won.awardsCount).toBe(2n);
      await transfer(h.pool, {
        key: `${h.prefix}out`,
        kind: 'withdrawal',
        from: accountId.user(id),
        to: EXTERNAL,
        amountCents: 469n,
      });
      const spent = await api.getAccount({ userId: id }, h.adminMd);
      expect(spent.balanceCents).toBe(2000n);
      expect(spent.awardsCount).toBe(2n);
    } finally {
      await h.pool.query('DELETE FROM awards WHERE packet_id IN (?, ?)', packets);
    }
  });

  it('times its MySQL calls; a NOT_FOUND inside a transaction is an answer, not a MySQL error', async () => {
    const ops = ['account_transaction', 'account_select_user', 'account_balance'] as const;
    const counts = async () => {
      const out: Record<string, number> = {};
      for (const op of ops) {
        out[op] = await metricValue('redpacket_dependency_duration_seconds_count', { dependency: 'mysql', op });
        out[`${op}_errors`] = await metricValue('redpacket_dependency_errors_total', { dependency: 'mysql', op });
      }
      return out;
    };
    const before = await counts();
    const id = `${h.prefix}timed`;
    await register(id); // one transaction (its INSERT and SELECT), then the balance
    await api.getAccount({ userId: id }, h.adminMd); // one SELECT, the balance
    const missing = await grpcError(api.blockUser({ userId: `${h.prefix}nobody`, reason: 'x' }, h.adminMd));
    expect(missing.code).toBe(status.NOT_FOUND);
    const after = await counts();
    const moved = Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]));
    expect(moved).toMatchObject({
      account_transaction: 2,
      account_balance: 2,
      account_transaction_errors: 0,
      account_select_user_errors: 0,
    });
    // register's SELECT inside the transaction, getAccount's, and blockUser's locking read
    expect(moved['account_select_user']).toBe(3);
  });

  it('refuses bad credentials alike for unknown users and wrong passwords', async () => {
    const id = `${h.prefix}bob`;
    await register(id, { password: 'bob-password' });
    for (const [u, p] of [
      [id, 'wrong-password'],
      [`${h.prefix}nobody`, 'bob-password'],
      [id, 'x'.repeat(100)],
    ] as const) {
      const err = await grpcError(issue(u, p));
      expect(err.code).toBe(status.UNAUTHENTICATED);
      expect(err.details).toBe('invalid user id or password');
    }
    expect((await grpcError(issue(id, ''))).code).toBe(status.UNAUTHENTICATED);
    for (const ttlSeconds of [-5, 86_401]) {
      const err = await grpcError(api.issueToken({ userId: id, password: 'bob-password', ttlSeconds }, new Metadata()));
      expect(err.code).toBe(status.INVALID_ARGUMENT);
    }
    const short = await api.issueToken({ userId: id, password: 'bob-password', ttlSeconds: 60 }, new Metadata());
    const exp = JSON.parse(Buffer.from(short.token.split('.')[1]!, 'base64url').toString()) as { exp: number };
    expect(Math.abs(exp.exp * 1000 - Date.now() - 60_000)).toBeLessThan(2000);
    expect(Math.abs(short.expiresAt!.getTime() - exp.exp * 1000)).toBeLessThan(1000);
  });

  it('lets an admin issue tokens for a device-less account, and makes admins', async () => {
    const id = `${h.prefix}device`;
    const acc = await register(id);
    expect(acc.hasPassword).toBe(false);
    const t = await api.issueToken({ userId: id, password: '', ttlSeconds: 60 }, h.adminMd);
    expect((await h.tokens.verify(t.token)).userId).toBe(id);
    const asUser = await grpcError(api.issueToken({ userId: id, password: '', ttlSeconds: 60 }, bearer(t.token)));
    expect(asUser.code).toBe(status.PERMISSION_DENIED);

    const ops = `${h.prefix}ops`;
    await register(ops, { role: 'admin', password: 'ops-password' });
    const opsToken = await issue(ops, 'ops-password');
    expect((await h.tokens.verify(opsToken.token)).role).toBe('admin');
  });

  it('validates input and reports duplicates', async () => {
    const id = `${h.prefix}carol`;
    await register(id);
    expect((await grpcError(register(id))).code).toBe(status.ALREADY_EXISTS);
    for (const bad of [
      user('has space'),
      user(`${h.prefix}x`, { riskScore: 101 }),
      user(`${h.prefix}x`, { password: 'short' }),
      user(`${h.prefix}x`, { role: 'root' }),
      user(`${h.prefix}x`, { displayName: 'n'.repeat(129) }),
    ]) {
      const err = await grpcError(api.registerUser({ user: bad }, h.adminMd));
      expect(err.code).toBe(status.INVALID_ARGUMENT);
    }
    const userToken = await testSigner().sign({ userId: id });
    const notAdmin = await grpcError(api.registerUser({ user: user(`${h.prefix}y`) }, bearer(userToken)));
    expect(notAdmin.code).toBe(status.PERMISSION_DENIED);
    const missing = await grpcError(api.blockUser({ userId: `${h.prefix}ghost`, reason: 'x' }, h.adminMd));
    expect(missing.code).toBe(status.NOT_FOUND);
  });

  it('blocks and unblocks with reason, time and audit trail, mirrored into rp:blocked', async () => {
    const id = `${h.prefix}dave`;
    await register(id);
    const noReason = await grpcError(api.blockUser({ userId: id, reason: ' ' }, h.adminMd));
    expect(noReason.code).toBe(status.INVALID_ARGUMENT);

    const blocked = await api.blockUser({ userId: id, reason: 'bot farm' }, h.adminMd);
    expect(blocked).toMatchObject({ blocked: true, blockReason: 'bot farm' });
    expect(blocked.blockedAt).toBeInstanceOf(Date);
    expect(await h.redis.sismember('rp:blocked', id)).toBe(1);
    // A blocked account still gets tokens and can read why; grabs refuse it (eligibility.test.ts).
    const t = await api.issueToken({ userId: id, password: '', ttlSeconds: 60 }, h.adminMd);
    const own = await api.getAccount({ userId: '' }, bearer(t.token));
    expect(own).toMatchObject({ blocked: true, blockReason: 'bot farm' });

    const again = await api.blockUser({ userId: id, reason: 'still a bot' }, h.adminMd);
    expect(again.blockReason).toBe('still a bot');
    expect(again.blockedAt!.getTime()).toBe(blocked.blockedAt!.getTime());

    const unblocked = await api.unblockUser({ userId: id }, h.adminMd);
    expect(unblocked).toMatchObject({ blocked: false, blockReason: '' });
    expect(unblocked.blockedAt).toBeUndefined();
    expect(await h.redis.sismember('rp:blocked', id)).toBe(0);

    const [events] = await h.pool.query(
      'SELECT action, reason, actor FROM user_block_events WHERE user_id = ? ORDER BY id',
      [id],
    );
    expect(events).toEqual([
      { action: 'block', reason: 'bot farm', actor: `${h.prefix}admin` },
      { action: 'block', reason: 'still a bot', actor: `${h.prefix}admin` },
      { action: 'unblock', reason: '', actor: `${h.prefix}admin` },
    ]);
  });

  it('mirrors risk scores into rp:risk, only above 0', async () => {
    const id = `${h.prefix}erin`;
    await register(id, { riskScore: 40 });
    expect(await h.redis.hget('rp:risk', id)).toBe('40');
    const acc = await api.setRiskScore({ userId: id, riskScore: 95 }, h.adminMd);
    expect(acc.riskScore).toBe(95);
    expect(await h.redis.hget('rp:risk', id)).toBe('95');
    await api.setRiskScore({ userId: id, riskScore: 0 }, h.adminMd);
    expect(await h.redis.hexists('rp:risk', id)).toBe(0);
    const bad = await grpcError(api.setRiskScore({ userId: id, riskScore: 101 }, h.adminMd));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
  });

  it('resync rebuilds a lost mirror from MySQL and drops what MySQL does not say', async () => {
    const blocked = `${h.prefix}frank`;
    const risky = `${h.prefix}grace`;
    const stranger = `${h.prefix}stranger`;
    await register(blocked);
    await register(risky, { riskScore: 70 });
    await api.blockUser({ userId: blocked, reason: 'fraud' }, h.adminMd);
    // Redis lost our entries (as after a restart) and holds ones MySQL never had.
    await h.redis.srem('rp:blocked', blocked);
    await h.redis.hdel('rp:risk', risky);
    await h.redis.sadd('rp:blocked', stranger, risky);
    await h.redis.hset('rp:risk', stranger, '99');

    const r = await resyncMirror(h.pool, h.serverRedis, { userPrefix: h.prefix, chunk: 1 });
    expect(r.flagged).toBe(2);
    expect(await h.redis.sismember('rp:blocked', blocked)).toBe(1);
    expect(await h.redis.hget('rp:risk', risky)).toBe('70');
    expect(await h.redis.sismember('rp:blocked', stranger)).toBe(0);
    expect(await h.redis.sismember('rp:blocked', risky)).toBe(0);
    expect(await h.redis.hexists('rp:risk', stranger)).toBe(0);
  });

  it('serves a JWKS with which a standard JWT library verifies the issued tokens', async () => {
    const jwks = await startJwksServer({ jwks: () => testSigner().jwks, host: '127.0.0.1', port: 0 });
    try {
      const res = await fetch(`http://127.0.0.1:${jwks.port}${JWKS_PATH}`);
      expect(res.status).toBe(200);
      const doc = (await res.json()) as { keys: Record<string, string>[] };
      expect(doc.keys).toHaveLength(1);
      expect(doc.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', kid: testSigner().kid });
      expect(doc.keys[0]).not.toHaveProperty('d'); // public keys only
      const id = `${h.prefix}jwks`;
      await register(id, { password: 'jwks-password' });
      const { token } = await issue(id, 'jwks-password');
      const { payload, protectedHeader } = await jwtVerify(token, await importJWK(doc.keys[0]!, 'ES256'), {
        algorithms: ['ES256'],
        issuer: 'redpacket',
        audience: 'redpacket-mesh',
      });
      expect(protectedHeader.kid).toBe(testSigner().kid);
      expect(payload.sub).toBe(id);
      expect((await fetch(`http://127.0.0.1:${jwks.port}/other`)).status).toBe(404);
    } finally {
      await jwks.close();
    }
  });
});

import { createHash } from 'node:crypto';
import { Metadata, status } from '@grpc/grpc-js';
import { createTokenVerifier, DEFAULT_JWT_AUDIENCE, DEFAULT_JWT_ISSUER } from '@redpacket/lib';
import { grpcError, refusedTokens } from '@redpacket/lib/testing';
import { Outcome } from '@redpacket/proto';
import { describe, expect, it } from 'vitest';
import { accountApi, bearer, grabApi, openCampaign, testSigner, useHarness, user, type Harness } from './harness.js';

/** The session bound of this file's account-svc: short, so tests can sit on either side of it. */
const MAX_SESSION_S = 3600;
const TOKEN_TTL_S = 600;

let h: Harness;
let api: ReturnType<typeof accountApi>;
useHarness({ grab: true, deps: { maxSessionSeconds: MAX_SESSION_S, tokenTtlSeconds: TOKEN_TTL_S } }, (x) => {
  h = x;
  api = accountApi(x.accounts);
});

const nowS = (): number => Math.floor(Date.now() / 1000);
const claimsOf = (token: string): Record<string, unknown> =>
  JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
const register = (userId: string, password = '') => api.registerUser({ user: user(userId, { password }) }, h.adminMd);
const signIn = (userId: string, password: string, ttlSeconds = 0) =>
  api.issueToken({ userId, password, ttlSeconds }, new Metadata());
const withCode = (userId: string, loginCode: string) =>
  api.issueToken({ userId, password: '', loginCode, ttlSeconds: 0 }, new Metadata());
/** A token signed as IssueToken would, for a session that began `agoS` seconds ago. */
const sessionToken = (userId: string, agoS: number, claims: Record<string, unknown> = {}) =>
  testSigner().sign({ userId, authTimeMs: Date.now() - agoS * 1000, claims });

describe('RefreshToken over gRPC', () => {
  it('gives a new token with the same sub, role, opened_at and auth_time, accepted by grab-svc and gift-svc', async () => {
    const id = `${h.prefix}refresher`;
    await register(id, 'correct horse');
    const first = await signIn(id, 'correct horse', 60);
    const refreshed = await api.refreshToken(bearer(first.token));
    expect(refreshed.tokenType).toBe('Bearer');
    const a = claimsOf(first.token);
    const b = claimsOf(refreshed.token);
    for (const claim of ['sub', 'role', 'opened_at', 'auth_time', 'iss', 'aud'])
      expect(b[claim], claim).toEqual(a[claim]);
    expect(a['auth_time']).toBeGreaterThan(nowS() - 10);
    expect(b['exp']).toBeGreaterThan(Number(a['exp']));
    expect(Number(b['exp'])).toBeLessThanOrEqual(nowS() + TOKEN_TTL_S);
    expect(refreshed.expiresAt!.getTime()).toBe(Number(b['exp']) * 1000);

    // gift-svc's verifier: the JWKS file, as its main builds it.
    const gift = createTokenVerifier({
      jwksFile: testSigner().jwksFile,
      issuer: DEFAULT_JWT_ISSUER,
      audience: DEFAULT_JWT_AUDIENCE,
    });
    expect(await gift.verify(refreshed.token)).toMatchObject({ userId: id, role: 'user' });
    // grab-svc over gRPC: the refreshed token grabs.
    const c = await openCampaign(h, { packets: 2 });
    const won = await grabApi(h.grab!, h.admin!).grab(
      { campaignId: c.campaignId, requestId: 'r1' },
      bearer(refreshed.token),
    );
    expect(won.outcome).toBe(Outcome.WON);

    // A chain of refreshes keeps the session's start.
    const again = await api.refreshToken(bearer(refreshed.token));
    expect(claimsOf(again.token)['auth_time']).toBe(a['auth_time']);
  });

  it('refuses an expired, forged or unrefreshable token with UNAUTHENTICATED', async () => {
    const id = `${h.prefix}forger`;
    await register(id, 'correct horse');
    const expired = await sessionToken(id, 60, { exp: nowS() - 600 });
    const refused: Record<string, string> = { expired, ...(await refusedTokens(id)) };
    // Signed by the operator's CLI, not by IssueToken: no auth_time, so no session to extend.
    refused['no auth_time'] = await testSigner().sign({ userId: id });
    for (const [kind, token] of Object.entries(refused)) {
      const err = await grpcError(api.refreshToken(bearer(token)));
      expect(err.code, kind).toBe(status.UNAUTHENTICATED);
    }
    expect((await grpcError(api.refreshToken(new Metadata()))).code).toBe(status.UNAUTHENTICATED);
    expect((await grpcError(api.refreshToken(bearer(expired)))).details).toMatch(/expired/);
  });

  it('refuses a blocked user with PERMISSION_DENIED, and refreshes again once unblocked', async () => {
    const id = `${h.prefix}blocked`;
    await register(id, 'correct horse');
    const t = await signIn(id, 'correct horse');
    await api.blockUser({ userId: id, reason: 'scripted clicks' }, h.adminMd);
    const err = await grpcError(api.refreshToken(bearer(t.token)));
    expect(err.code).toBe(status.PERMISSION_DENIED);
    await api.unblockUser({ userId: id }, h.adminMd);
    expect((await h.tokens.verify((await api.refreshToken(bearer(t.token))).token)).userId).toBe(id);
  });

  it('never extends a session past auth_time + the longest session, and refuses one that is over', async () => {
    const id = `${h.prefix}session`;
    await register(id, 'correct horse');
    // 300 s of the session left, less than a token's lifetime: the new token ends with the session.
    const late = await sessionToken(id, MAX_SESSION_S - 300);
    const authTime = Number(claimsOf(late)['auth_time']);
    const capped = await api.refreshToken(bearer(late));
    expect(claimsOf(capped.token)['exp']).toBe(authTime + MAX_SESSION_S);
    expect(capped.expiresAt!.getTime()).toBe((authTime + MAX_SESSION_S) * 1000);

    const over = await sessionToken(id, MAX_SESSION_S + 1);
    const err = await grpcError(api.refreshToken(bearer(over)));
    expect(err.code).toBe(status.UNAUTHENTICATED);
    expect(err.details).toMatch(/session too old/);
  });

  it('does not carry an admin role forward for a user who is not an admin', async () => {
    const id = `${h.prefix}demoted`;
    await register(id, 'correct horse');
    const t = await sessionToken(id, 10, { role: 'admin' });
    expect((await h.tokens.verify(t)).role).toBe('admin');
    const refreshed = await api.refreshToken(bearer(t));
    expect((await h.tokens.verify(refreshed.token)).role).toBe('user');
  });
});

describe('login codes over gRPC', () => {
  const codeFor = (userId: string, ttlSeconds = 0) => api.issueLoginCode({ userId, ttlSeconds }, h.adminMd);
  const refusal = async (userId: string, code: string) => {
    const err = await grpcError(withCode(userId, code));
    expect(err.code).toBe(status.UNAUTHENTICATED);
    return err.details;
  };

  it('a pre-opened device-less account signs in once with a code; it is stored only as a SHA-256', async () => {
    const id = `${h.prefix}kiosk`;
    const acc = await register(id);
    expect(acc.hasPassword).toBe(false);
    const before = Date.now();
    const issued = await codeFor(id);
    expect(issued.code).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(Buffer.from(issued.code, 'base64url').length * 8).toBeGreaterThanOrEqual(128);
    const ttl = issued.expiresAt!.getTime() - before;
    expect(ttl).toBeGreaterThan(590_000);
    expect(ttl).toBeLessThanOrEqual(601_000);

    const [rows] = await h.pool.query('SELECT * FROM login_codes WHERE user_id = ?', [id]);
    const row = (rows as Record<string, unknown>[])[0]!;
    expect(row['code_sha256']).toEqual(createHash('sha256').update(issued.code).digest());
    expect(JSON.stringify(row)).not.toContain(issued.code);
    expect(row['issued_by']).toBe(`${h.prefix}admin`);

    const t = await withCode(id, issued.code);
    const who = await h.tokens.verify(t.token);
    expect(who).toMatchObject({ userId: id, role: 'user' });
    expect(who.authTimeMs).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
    // The first token of a device-less account refreshes like any other.
    expect((await h.tokens.verify((await api.refreshToken(bearer(t.token))).token)).userId).toBe(id);

    const reused = await refusal(id, issued.code);
    expect(reused).toBe('invalid user id or login code');
  });

  it('refuses a wrong, expired, replaced or another user’s code with one answer, and uses none of them', async () => {
    const a = `${h.prefix}code-a`;
    const b = `${h.prefix}code-b`;
    await register(a);
    await register(b);
    const codeA = (await codeFor(a)).code;
    const codeB = (await codeFor(b)).code;
    const answers = [
      await refusal(a, codeB), // another user's
      await refusal(a, `${codeA.slice(0, -1)}${codeA.endsWith('A') ? 'B' : 'A'}`), // wrong
      await refusal(a, 'x'.repeat(5000)), // not a code at all
      await refusal(`${h.prefix}nobody`, codeA), // unknown user
    ];
    expect(new Set(answers)).toEqual(new Set(['invalid user id or login code']));
    // None of those attempts spent a code.
    expect((await h.tokens.verify((await withCode(b, codeB)).token)).userId).toBe(b);

    // Expired: the row's expiry moved into the past (the code itself unchanged).
    await h.pool.query('UPDATE login_codes SET expires_at = ? WHERE user_id = ?', [new Date(Date.now() - 1000), a]);
    expect(await refusal(a, codeA)).toBe(answers[0]);

    // A new code replaces the previous one.
    const first = (await codeFor(a)).code;
    const second = (await codeFor(a)).code;
    expect(await refusal(a, first)).toBe(answers[0]);
    expect((await h.tokens.verify((await withCode(a, second)).token)).userId).toBe(a);
  });

  it('one code, 20 concurrent sign-ins: exactly one token', async () => {
    const id = `${h.prefix}race`;
    await register(id);
    const { code } = await codeFor(id);
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => withCode(id, code)));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results.filter((x) => x.status === 'rejected')) {
      expect((r.reason as { code: number }).code).toBe(status.UNAUTHENTICATED);
    }
  });

  it('IssueLoginCode is admin-only and checks its input; a code and a password together are refused', async () => {
    const id = `${h.prefix}guarded`;
    await register(id, 'correct horse');
    const userToken = (await signIn(id, 'correct horse')).token;
    const denied = await grpcError(api.issueLoginCode({ userId: id, ttlSeconds: 0 }, bearer(userToken)));
    expect(denied.code).toBe(status.PERMISSION_DENIED);
    const anonymous = await grpcError(api.issueLoginCode({ userId: id, ttlSeconds: 0 }, new Metadata()));
    expect(anonymous.code).toBe(status.UNAUTHENTICATED);
    const [rows] = await h.pool.query('SELECT user_id FROM login_codes WHERE user_id = ?', [id]);
    expect(rows).toEqual([]);

    const unknown = await grpcError(codeFor(`${h.prefix}nobody`));
    expect(unknown.code).toBe(status.NOT_FOUND);
    for (const ttl of [-1, 7 * 86_400 + 1]) {
      const bad = await grpcError(codeFor(id, ttl));
      expect(bad.code, String(ttl)).toBe(status.INVALID_ARGUMENT);
      expect(bad.details).toContain('ttl_seconds');
    }
    const { code } = await codeFor(id);
    const both = await grpcError(
      api.issueToken({ userId: id, password: 'correct horse', loginCode: code, ttlSeconds: 0 }, new Metadata()),
    );
    expect(both.code).toBe(status.INVALID_ARGUMENT);
    expect(both.details).toContain('login_code');
    // Refused input spent nothing: the code still signs in.
    expect((await h.tokens.verify((await withCode(id, code)).token)).userId).toBe(id);
  });
});

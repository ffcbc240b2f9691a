import { createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Metadata, status } from '@grpc/grpc-js';
import { MAX_TOKEN_LENGTH, TokenVerifier } from '@redpacket/lib';
import { grpcError, pollUntil, refusedTokens } from '@redpacket/lib/testing';
import { Outcome } from '@redpacket/proto';
import { generateKeyPair, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { accountApi, bearer, grabApi, openCampaign, useHarness, testSigner, type Harness } from './harness.js';

type SignKey = Parameters<SignJWT['sign']>[0];
const testKey = createPrivateKey(readFileSync(testSigner().privateKeyFile));
const otherKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const now = (): number => Math.floor(Date.now() / 1000);
const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');

/** A token signed by hand, so every claim and header can be wrong on purpose; iss and aud right by default. */
function jwt(claims: Record<string, unknown>, alg = 'ES256', key: SignKey = testKey, kid = testSigner().kid) {
  return new SignJWT({ iss: 'redpacket', aud: 'redpacket-mesh', ...claims })
    .setProtectedHeader({ alg, typ: 'JWT', ...(kid ? { kid } : {}) })
    .sign(key);
}

/** The refused kinds of token: each makes one rule fail, nothing else. */
async function badTokens(sub: string): Promise<Record<string, () => Promise<string>>> {
  const rsa = await generateKeyPair('RS256');
  const shared = await refusedTokens(sub);
  return {
    ...Object.fromEntries(Object.entries(shared).map(([k, t]) => [k, async () => t])),
    'not yet valid': () => jwt({ sub, exp: now() + 600, nbf: now() + 60 }),
    'alg none, no signature': async () =>
      `${b64({ alg: 'none', typ: 'JWT', kid: testSigner().kid })}.${b64({ sub, exp: now() + 600 })}.`,
    'HS256 keyed with the public JWK': () =>
      jwt({ sub, exp: now() + 600 }, 'HS256', new TextEncoder().encode(JSON.stringify(testSigner().jwks.keys[0]))),
    'another algorithm (RS256)': () => jwt({ sub, exp: now() + 600 }, 'RS256', rsa.privateKey),
    'bad signature (another key, same kid)': () => jwt({ sub, exp: now() + 600 }, 'ES256', otherKey),
    'no kid': () => jwt({ sub, exp: now() + 600 }, 'ES256', testKey, ''),
    'no iss': () => jwt({ sub, exp: now() + 600, iss: undefined }),
    'no aud': () => jwt({ sub, exp: now() + 600, aud: undefined }),
    'tampered payload': async () => {
      const [head, , sig] = (await jwt({ sub: `${sub}x`, exp: now() + 600 })).split('.');
      return `${head}.${b64({ sub, exp: now() + 600, role: 'admin', iss: 'redpacket', aud: 'redpacket-mesh' })}.${sig}`;
    },
    'no sub': () => jwt({ exp: now() + 600 }),
    'no exp': () => jwt({ sub }),
    'sub not a user id': () => jwt({ sub: 'has spaces and | bars', exp: now() + 600 }),
    'over-long': () => jwt({ sub, exp: now() + 600, pad: 'x'.repeat(MAX_TOKEN_LENGTH) }),
    malformed: async () => randomBytes(40).toString('base64url'),
    'three dots of garbage': async () => `${randomBytes(8).toString('hex')}.${randomBytes(8).toString('hex')}.x`,
  };
}

describe('token rules (lib TokenVerifier, shared by every verifier)', () => {
  const v = testSigner().verifier();

  it('accepts a good token and reads sub, role and opened_at', async () => {
    const t = await testSigner().sign({ userId: 'u-1', role: 'admin', openedAtMs: 1_700_000_000_250 });
    expect(await v.verify(t)).toEqual({ userId: 'u-1', role: 'admin', openedAtMs: 1_700_000_001_000 });
  });

  it('refuses each kind of bad token with UNAUTHENTICATED', async () => {
    for (const [kind, make] of Object.entries(await badTokens('u-1'))) {
      const err = await v.verify(await make()).then(
        () => undefined,
        (e: { code: number; message: string }) => e,
      );
      expect(err, kind).toBeDefined();
      expect(err!.code, kind).toBe(status.UNAUTHENTICATED);
    }
  });

  it('allows 5 s of clock skew on exp and nbf, and no more', async () => {
    expect((await v.verify(await jwt({ sub: 'u-2', exp: now() - 2 }))).userId).toBe('u-2');
    expect((await v.verify(await jwt({ sub: 'u-2', exp: now() + 60, nbf: now() + 2 }))).userId).toBe('u-2');
    await expect(v.verify(await jwt({ sub: 'u-2', exp: now() - 8 }))).rejects.toMatchObject({
      code: status.UNAUTHENTICATED,
    });
    await expect(v.verify(await jwt({ sub: 'u-2', exp: now() + 60, nbf: now() + 8 }))).rejects.toMatchObject({
      code: status.UNAUTHENTICATED,
    });
  });

  it('caches a verified token, and still lets it expire', async () => {
    const strict = new TokenVerifier({ jwks: testSigner().jwks, clockToleranceSeconds: 0 });
    const t = await jwt({ sub: 'u-3', exp: now() + 2 });
    await strict.verify(t);
    for (let i = 0; i < 100; i++) await strict.verify(t);
    expect(strict.stats).toEqual({ verified: 1, cacheHits: 100 });
    await pollUntil(
      'the cached token to expire',
      () =>
        strict.verify(t).then(
          () => false,
          (e: { code: number }) => e.code === status.UNAUTHENTICATED,
        ),
      5000,
      50,
    );
  });

  it('refuses malformed authorization metadata', async () => {
    const good = await testSigner().sign({ userId: 'u-4' });
    const cases: Metadata[] = [new Metadata()];
    for (const value of [good, `Basic ${good}`, `Bearer ${good} extra`, 'Bearer ']) {
      const md = new Metadata();
      md.set('authorization', value);
      cases.push(md);
    }
    const two = bearer(good);
    two.add('authorization', `Bearer ${good}`);
    cases.push(two);
    for (const md of cases) await expect(v.fromMetadata(md)).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
  });
});

describe('bad tokens over gRPC', () => {
  let h: Harness;
  useHarness({ grab: true }, (x) => (h = x));

  it('account-svc refuses every kind with UNAUTHENTICATED, and takes a good ES256 token', async () => {
    const api = accountApi(h.accounts);
    const ok = await testSigner().sign({ userId: `${h.prefix}admin`, role: 'admin' });
    await expect(api.getAccount({ userId: `${h.prefix}nobody` }, bearer(ok))).rejects.toMatchObject({
      code: status.NOT_FOUND,
    });
    for (const [kind, make] of Object.entries(await badTokens(`${h.prefix}admin`))) {
      const err = await grpcError(api.getAccount({ userId: '' }, bearer(await make())));
      expect(err.code, kind).toBe(status.UNAUTHENTICATED);
    }
  });

  it('1,000 forged, expired or malformed tokens reach neither Redis nor MySQL', async () => {
    const g = grabApi(h.grab!, h.admin!);
    const campaign = await openCampaign(h, { packets: 100 });
    const kinds = Object.values(await badTokens(`${h.prefix}victim`));
    const tokens = await Promise.all(Array.from({ length: 1000 }, (_, i) => kinds[i % kinds.length]!()));

    // Server-side proof, free of MONITOR: the servers' own Redis connection still shows the
    // command sent just before as its last one, and the campaign's counters do not move.
    const server = h.serverRedis as import('ioredis').Redis;
    const clientId = Number(await server.client('ID'));
    const marker = `rules-${h.prefix}`;
    await server.client('SETNAME', marker);
    const lastCommand = async (): Promise<string> => {
      const line = String(await h.redis.client('LIST', 'ID', clientId));
      expect(line).toContain(`name=${marker}`);
      return /\bcmd=(\S+)/.exec(line)?.[1] ?? '';
    };
    const statsKey = `rp:{${campaign.campaignId}}:stats`;
    const statsBefore = await h.redis.hgetall(statsKey);
    const [[usersBefore]] = (await h.pool.query('SELECT COUNT(*) AS n FROM users WHERE user_id LIKE ?', [
      `${h.prefix}%`,
    ])) as unknown as [[{ n: number }]];
    expect(await lastCommand()).toBe('client|setname');

    const accounts = accountApi(h.accounts);
    const results = await Promise.all(
      tokens.map((t, i) =>
        grpcError(
          i % 2 === 0
            ? g.grab({ campaignId: campaign.campaignId, requestId: `r${i}` }, bearer(t))
            : accounts.blockUser({ userId: `${h.prefix}victim`, reason: 'forged' }, bearer(t)),
        ),
      ),
    );
    expect(results.filter((e) => e.code === status.UNAUTHENTICATED)).toHaveLength(1000);

    expect(await lastCommand()).toBe('client|setname');
    expect(await h.redis.hgetall(statsKey)).toEqual(statsBefore);
    const [[usersAfter]] = (await h.pool.query('SELECT COUNT(*) AS n FROM users WHERE user_id LIKE ?', [
      `${h.prefix}%`,
    ])) as unknown as [[{ n: number }]];
    expect(usersAfter.n).toBe(usersBefore.n);

    // The probe does see a call that gets through.
    const good = await testSigner().sign({ userId: `${h.prefix}honest` });
    const won = await g.grab({ campaignId: campaign.campaignId, requestId: 'ok' }, bearer(good));
    expect(won.outcome).toBe(Outcome.WON);
    expect(await lastCommand()).not.toBe('client|setname');
  });
});

import { credentials, makeGenericClientConstructor, status, type ServiceError } from '@grpc/grpc-js';
import { keys } from '@redpacket/lib';
import { bearer, call, grpcError, refusedTokens, testSigner } from '@redpacket/lib/testing';
import { Split, type CreateCampaignRequest } from '@redpacket/proto';
import { service as healthService } from 'grpc-health-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { campaignRequest, startHarness, type Harness } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
const future = () => new Date(Date.now() + 60_000);

describe('CreateCampaign validation', () => {
  const cases: [string, Partial<CreateCampaignRequest>][] = [
    ['packet_count', { packetCount: 0 }],
    ['packet_count', { packetCount: -5 }],
    ['packet_count', { packetCount: 20_000_000, totalCents: 100_000_000n }],
    ['total_cents', { totalCents: 0n }],
    ['total_cents', { totalCents: -100n }],
    ['total_cents', { totalCents: 9_000_000_000_000_000_000n }],
    ['packet_count', { packetCount: 11, totalCents: 10n }],
    ['split', { split: Split.SPLIT_UNSPECIFIED }],
    ['split', { split: 99 as Split }],
    ['batches', { batches: 0 }],
    ['batches', { batches: 11, packetCount: 10 }],
    ['batch_interval_ms', { batches: 2, batchIntervalMs: 0n }],
    ['batch_interval_ms', { batchIntervalMs: -1n }],
    ['expires_at', { expiresAt: undefined }],
    ['expires_at', { startsAt: future(), expiresAt: new Date(Date.now() + 30_000) }],
    ['expires_at', { startsAt: new Date(Date.now() - 120_000), expiresAt: new Date(Date.now() - 60_000) }],
    ['expires_at', { batches: 3, batchIntervalMs: 40_000n, expiresAt: future() }],
    [
      'starts_at',
      { startsAt: new Date(Date.now() + 400 * 86_400_000), expiresAt: new Date(Date.now() + 401 * 86_400_000) },
    ],
    ['name', { name: '' }],
    ['name', { name: '   ' }],
    ['name', { name: 'x'.repeat(129) }],
    ['owner_id', { ownerId: '' }],
    ['owner_id', { ownerId: 'o'.repeat(129) }],
    ['owner_id', { ownerId: 'has space' }],
    [
      'eligibility.max_risk_score',
      { eligibility: { requirePreOpened: false, maxRiskScore: 101, admissionPpm: undefined } },
    ],
    [
      'eligibility.admission_ppm',
      { eligibility: { requirePreOpened: false, maxRiskScore: undefined, admissionPpm: 1_000_001 } },
    ],
  ];

  it('refuses each bad field with INVALID_ARGUMENT naming it, and writes nothing', async () => {
    const marker = `bad-${h.run}`;
    for (const [field, over] of cases) {
      const req = { ...campaignRequest({ name: marker }), ...over };
      const err = await grpcError(call(h.admin.createCampaign, h.admin, req, bearer(h.adminToken)));
      expect(err.code, `${field} ${JSON.stringify(over, (_, v) => (typeof v === 'bigint' ? String(v) : v))}`).toBe(
        status.INVALID_ARGUMENT,
      );
      expect(err.details.startsWith(`${field}:`), err.details).toBe(true);
    }
    // no campaign with the marker name exists anywhere
    const ids = await h.redis.zrange(keys.campaigns, 0, -1);
    const pipe = h.redis.pipeline();
    ids.forEach((id) => pipe.hget(keys.meta(id), 'name'));
    const names = ((await pipe.exec()) ?? []).map(([, v]) => v);
    expect(names).not.toContain(marker);
  });

  it('accepts the limits: 1 packet of 1 cent; packet_count = total_cents', async () => {
    const one = await h.create({ packetCount: 1, totalCents: 1n });
    expect(one.packetCount).toBe(1);
    const tight = await h.create({ packetCount: 50, totalCents: 50n, batches: 50, batchIntervalMs: 1000n });
    expect(tight.batches).toBe(50);
  });

  it('refuses malformed ids on every method before touching Redis', async () => {
    const user = await h.userToken(`${h.run}-u`);
    for (const bad of ['', 'a'.repeat(65), 'has space', 'rp:{x}', 'ünï']) {
      expect((await grpcError(call(h.grab.grab, h.grab, { campaignId: bad, requestId: '' }, bearer(user)))).code).toBe(
        status.INVALID_ARGUMENT,
      );
      expect((await grpcError(call(h.grab.getCampaign, h.grab, { campaignId: bad }, bearer(user)))).code).toBe(
        status.INVALID_ARGUMENT,
      );
      expect(
        (await grpcError(call(h.admin.getCampaignStats, h.admin, { campaignId: bad }, bearer(h.adminToken)))).code,
      ).toBe(status.INVALID_ARGUMENT);
    }
    const c = await h.create();
    for (const badReq of ['a|b', 'x'.repeat(129), 'with space']) {
      const err = await grpcError(
        call(h.grab.grab, h.grab, { campaignId: c.campaignId, requestId: badReq }, bearer(user)),
      );
      expect(err.code).toBe(status.INVALID_ARGUMENT);
      expect(err.details).toMatch(/^request_id:/);
    }
    expect(await h.redis.hlen(keys.claims(c.campaignId))).toBe(0);
  });
});

describe('Tokens', () => {
  it('refuses missing, malformed, HS256, alg none, unknown-key, other-issuer, other-audience, expired, not-yet-valid, no-sub and over-long tokens, writing nothing', async () => {
    const c = await h.create();
    const now = Math.floor(Date.now() / 1000);
    const sign = (claims: Record<string, unknown>) => testSigner().sign({ userId: 'eve', claims });
    const tokens: Record<string, string> = {
      // HS256 with a guessable secret, alg none, unknown key or kid, other iss or aud, expired
      ...(await refusedTokens('mallory')),
      notYetValid: await sign({ nbf: now + 600 }),
      algNoneNoSignature: `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'eve', exp: now + 600 })}.`,
      noSub: await sign({ sub: undefined }),
      noExp: await sign({ exp: undefined }),
      badSub: await testSigner().sign({ userId: 'has space' }),
      tooLong: await testSigner().sign({ userId: 'big', claims: { pad: 'x'.repeat(5000) } }),
      garbage: 'not.a.jwt',
    };
    for (const [name, token] of Object.entries(tokens)) {
      const err = await grpcError(
        call(h.grab.grab, h.grab, { campaignId: c.campaignId, requestId: '' }, bearer(token)),
      );
      expect(err.code, name).toBe(status.UNAUTHENTICATED);
    }
    const noAuth = await grpcError(
      new Promise((res, rej) =>
        h.grab.grab({ campaignId: c.campaignId, requestId: '' }, (e: ServiceError | null, r: unknown) =>
          e ? rej(e) : res(r),
        ),
      ),
    );
    expect(noAuth.code).toBe(status.UNAUTHENTICATED);
    const md = bearer('x');
    md.set('authorization', 'Basic dXNlcjpwYXNz');
    expect((await grpcError(call(h.grab.grab, h.grab, { campaignId: c.campaignId, requestId: '' }, md))).code).toBe(
      status.UNAUTHENTICATED,
    );

    const s = await call(h.admin.getCampaignStats, h.admin, { campaignId: c.campaignId }, bearer(h.adminToken));
    expect(s.packetsClaimed + Number(s.wonCount + s.forbiddenCount + s.soldOutCount)).toBe(0);
  });

  it('a user token on an admin call is PERMISSION_DENIED; an admin token works', async () => {
    const user = await h.userToken(`${h.run}-plain`);
    const err = await grpcError(call(h.admin.createCampaign, h.admin, campaignRequest(), bearer(user)));
    expect(err.code).toBe(status.PERMISSION_DENIED);
    const list = await call(h.admin.listCampaigns, h.admin, { pageSize: 1, pageToken: '' }, bearer(h.adminToken));
    expect(list.campaigns.length).toBeLessThanOrEqual(1);
  });
});

describe('Standard services', () => {
  it('answers grpc.health.v1 for the server and each service', async () => {
    const Health = makeGenericClientConstructor(healthService, 'Health');
    const client = new Health(`127.0.0.1:${h.server!.port}`, credentials.createInsecure());
    try {
      for (const svc of ['', 'redpacket.v1.GrabService', 'redpacket.v1.AdminService']) {
        const res = await new Promise<{ status: string }>((resolve, reject) =>
          (
            client as unknown as { check: (r: object, cb: (e: Error | null, r: { status: string }) => void) => void }
          ).check({ service: svc }, (e, r) => (e ? reject(e) : resolve(r))),
        );
        expect(res.status).toBe('SERVING');
      }
    } finally {
      client.close();
    }
  });
});

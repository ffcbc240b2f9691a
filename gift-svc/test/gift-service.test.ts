/** GiftService over gRPC against the real MySQL (and Redis for in-flight counts). */
import { credentials, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { Pool } from '@redpacket/db';
import { keys, startServer, type RunningServer } from '@redpacket/lib';
import { bearer, call, grpcError, refusedTokens, requireRedis, testSigner } from '@redpacket/lib/testing';
import { GiftServiceClient } from '@redpacket/proto';
import { recordDeadLetter } from '../src/awards-writer.js';
import { createGiftServer } from '../src/server.js';
import { requireMysql, silent, uid, writeFundedAwards } from './harness.js';

let redis: Redis;
let pool: Pool;
let server: RunningServer;
let client: InstanceType<typeof GiftServiceClient>;
const c1 = `gs${uid()}`;
const c2 = `gs${uid()}`;
const alice = `alice-${uid()}`;
const t0 = Date.UTC(2026, 0, 1);

beforeAll(async () => {
  redis = await requireRedis();
  pool = await requireMysql();
  server = await startServer({
    services: createGiftServer({ pool, redis, tokens: testSigner().verifier(), log: silent }),
    host: '127.0.0.1',
    port: 0,
    log: silent,
  });
  client = new GiftServiceClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
  // c1: 5 winners, amounts 10, 50, 30, 50, 20 (two best at 50: the earlier one is best luck).
  const amounts = [10n, 50n, 30n, 50n, 20n];
  await writeFundedAwards(
    pool,
    amounts.map((a, i) => ({
      campaignId: c1,
      packetId: `${c1}p${i}`,
      userId: i === 0 ? alice : `bob${i}`,
      amountCents: a,
      requestId: `r${i}`,
      wonAtMs: BigInt(t0 + i * 1000),
      streamId: '',
      traceId: '',
    })),
  );
  await writeFundedAwards(pool, [
    {
      campaignId: c2,
      packetId: `${c2}p0`,
      userId: alice,
      amountCents: 7n,
      requestId: 'r',
      wonAtMs: BigInt(t0 + 9000),
      streamId: '',
      traceId: '',
    },
  ]);
  await recordDeadLetter(pool, { campaignId: c1, packetId: 'zz', reason: 'test', attempts: 5, body: Buffer.from('x') });
  await redis.hset(keys.stats(c1), 'claimed', 8);
});

afterAll(async () => {
  for (const table of ['awards', 'ledger', 'dead_letters']) {
    await pool.query(`DELETE FROM ${table} WHERE campaign_id IN (?, ?)`, [c1, c2]);
  }
  await redis.del(keys.stats(c1));
  client.close();
  await server.shutdown(1000);
  await pool.end();
  redis.disconnect();
});

const userMd = async (userId: string, role?: 'admin') => bearer(await testSigner().sign({ userId, role }));

describe('GiftService', () => {
  it("lists the caller's awards newest first, paged and filtered", async () => {
    const md = await userMd(alice);
    const all = await call(client.listMyAwards, client, { pageSize: 1, pageToken: '', campaignId: '' }, md);
    expect(all.totalCount).toBe(2n);
    expect(all.awards.map((a) => [a.campaignId, a.amountCents])).toEqual([[c2, 7n]]);
    expect(all.awards[0]?.wonAt?.getTime()).toBe(t0 + 9000);
    const next = await call(
      client.listMyAwards,
      client,
      { pageSize: 1, pageToken: all.nextPageToken, campaignId: '' },
      md,
    );
    expect(next.awards.map((a) => [a.campaignId, a.amountCents])).toEqual([[c1, 10n]]);
    expect(next.nextPageToken).toBe('');
    const only = await call(client.listMyAwards, client, { pageSize: 0, pageToken: '', campaignId: c1 }, md);
    expect(only.awards.map((a) => a.packetId)).toEqual([`${c1}p0`]);
  });

  it("lists a campaign's winners with the best-luck winner, admins only", async () => {
    const res = await call(
      client.listCampaignAwards,
      client,
      { campaignId: c1, pageSize: 3, pageToken: '' },
      await userMd('op', 'admin'),
    );
    expect(res.totalCount).toBe(5n);
    expect(res.awards.map((a) => a.amountCents)).toEqual([10n, 50n, 30n]);
    expect(res.nextPageToken).toBe('3');
    expect(res.bestLuck?.packetId).toBe(`${c1}p1`);
    const err = await grpcError(
      call(client.listCampaignAwards, client, { campaignId: c1, pageSize: 0, pageToken: '' }, await userMd(alice)),
    );
    expect(err.code).toBe(status.PERMISSION_DENIED);
  });

  it('reports delivered, in flight and dead-lettered (a parked win is not in flight)', async () => {
    const s = await call(client.getDeliveryStats, client, { campaignId: c1 }, await userMd('op', 'admin'));
    expect(s).toMatchObject({ campaignId: c1, delivered: 5n, deliveredCents: 160n, inFlight: 2n, deadLettered: 1n });
    expect(s.lastDeliveredAt).toBeInstanceOf(Date);
  });

  it('refuses bad input and missing tokens', async () => {
    const md = await userMd(alice);
    const bad = await grpcError(
      call(client.listMyAwards, client, { pageSize: 501, pageToken: '', campaignId: '' }, md),
    );
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    const token = await grpcError(
      call(client.listMyAwards, client, { pageSize: 0, pageToken: 'x', campaignId: '' }, md),
    );
    expect(token.code).toBe(status.INVALID_ARGUMENT);
    const id = await grpcError(
      call(client.getDeliveryStats, client, { campaignId: 'no such id!' }, await userMd('op', 'admin')),
    );
    expect(id.code).toBe(status.INVALID_ARGUMENT);
    const none = await grpcError(
      call(client.listMyAwards, client, { pageSize: 0, pageToken: '', campaignId: '' }, bearer('x')),
    );
    expect(none.code).toBe(status.UNAUTHENTICATED);
  });

  it('refuses HS256, alg none, an unknown key, another issuer or audience and expired tokens; takes ES256', async () => {
    for (const [kind, token] of Object.entries(await refusedTokens('gift-rules'))) {
      const err = await grpcError(
        call(client.listMyAwards, client, { pageSize: 0, pageToken: '', campaignId: '' }, bearer(token)),
      );
      expect(err.code, kind).toBe(status.UNAUTHENTICATED);
    }
    const ok = await call(
      client.listMyAwards,
      client,
      { pageSize: 0, pageToken: '', campaignId: '' },
      bearer(await testSigner().sign({ userId: 'gift-rules' })),
    );
    expect(ok.awards).toEqual([]);
  });
});

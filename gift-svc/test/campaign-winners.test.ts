/**
 * GiftService.ListCampaignWinners over gRPC against the real MySQL, with the switches in a Redis
 * database of this file's own (awards.queries_disabled is global: no other test may see it).
 */
import { credentials, Metadata, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { Pool } from '@redpacket/db';
import { setSwitch, startServer, Switches, type RunningServer } from '@redpacket/lib';
import { bearer, call, grpcError, pollUntil, requireRedis, testRedisDb, testSigner } from '@redpacket/lib/testing';
import { GiftServiceClient, type ListCampaignWinnersResponse } from '@redpacket/proto';
import { maskUserId } from '../src/awards.js';
import { createGiftServer } from '../src/server.js';
import { requireMysql, silent, uid, writeFundedAwards } from './harness.js';

const OWN_DB_URL = testRedisDb(10);

let ownDb: Redis;
let pool: Pool;
let switches: Switches;
let server: RunningServer;
let client: GiftServiceClient;
let md: Metadata;
const c1 = `cw${uid()}`;
const t0 = Date.UTC(2026, 0, 1);
// Ids of every masking length: 2, 3, 4, 5 characters and a long one.
const users = ['ab', 'abc', 'abcd', 'abcde', `alice-${uid()}@example.com`];
const amounts = [10n, 50n, 30n, 50n, 20n];

beforeAll(async () => {
  ownDb = await requireRedis(OWN_DB_URL);
  pool = await requireMysql();
  switches = new Switches(ownDb, silent, { refreshMs: 100 });
  await switches.start();
  server = await startServer({
    services: createGiftServer({ pool, tokens: testSigner().verifier(), log: silent, switches }),
    host: '127.0.0.1',
    port: 0,
    log: silent,
  });
  client = new GiftServiceClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
  md = bearer(await testSigner().sign({ userId: `viewer-${uid()}` }));
  // Written out of order: the listing orders by won_at, not by insertion.
  const rows = amounts.map((a, i) => ({
    campaignId: c1,
    packetId: `${c1}p${i}`,
    userId: users[i]!,
    amountCents: a,
    requestId: `r${i}`,
    wonAtMs: BigInt(t0 + i * 1000),
    streamId: '',
    traceId: '',
  }));
  await writeFundedAwards(pool, [...rows].reverse());
});

afterAll(async () => {
  await setSwitch(ownDb, 'awards.queries_disabled', false);
  for (const table of ['awards', 'ledger']) await pool.query(`DELETE FROM ${table} WHERE campaign_id = ?`, [c1]);
  switches.stop();
  client.close();
  await server.shutdown(1000);
  await pool.end();
  ownDb.disconnect();
});

const winners = (campaignId: string, pageSize = 0, pageToken = '', meta = md): Promise<ListCampaignWinnersResponse> =>
  call(client.listCampaignWinners, client, { campaignId, pageSize, pageToken }, meta);

describe('ListCampaignWinners', () => {
  it('masks every user id: first and last character, less for short ids, never a whole one', () => {
    expect(users.map(maskUserId)).toEqual(['***', 'a***', 'a***', 'a***e', `a***m`]);
    expect(maskUserId('x')).toBe('***');
    // By character, not by UTF-16 unit: an emoji is not cut in half.
    expect(maskUserId('😀bcd😀')).toBe('😀***😀');
  });

  it('lists the winners in the order they won, masked, with the best luck, to any user', async () => {
    const res = await winners(c1);
    expect(res.totalCount).toBe(5n);
    expect(res.winners.map((w) => [w.maskedUserId, w.amountCents, w.wonAt?.getTime()])).toEqual(
      users.map((u, i) => [maskUserId(u), amounts[i], t0 + i * 1000]),
    );
    // Two at 50 cents: the earlier one is the best luck.
    expect(res.bestLuck).toEqual({ maskedUserId: 'a***', amountCents: 50n, wonAt: new Date(t0 + 1000) });
    // Nothing of a raw user id or a redeemable packet code anywhere in the answer.
    const text = JSON.stringify(res, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v));
    for (const u of users) expect(text).not.toContain(u);
    expect(text).not.toContain(`${c1}p`);
  });

  it('pages in won order with no duplicates or gaps', async () => {
    const seen: bigint[] = [];
    let token = '';
    let pages = 0;
    do {
      const res = await winners(c1, 2, token);
      expect(res.winners.length).toBeLessThanOrEqual(2);
      expect(res.bestLuck?.amountCents).toBe(50n);
      seen.push(...res.winners.map((w) => BigInt(w.wonAt!.getTime() - t0)));
      token = res.nextPageToken;
      pages++;
    } while (token !== '');
    expect(pages).toBe(3);
    expect(seen).toEqual([0n, 1000n, 2000n, 3000n, 4000n]);
  });

  it('lists an unknown campaign as empty, and refuses bad input or no token', async () => {
    const none = await winners(`cw${uid()}`);
    expect(none).toEqual({ winners: [], nextPageToken: '', bestLuck: undefined, totalCount: 0n });
    const bad = await grpcError(winners('not an id!'));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect(bad.details).toMatch(/campaign_id/);
    const token = await grpcError(winners(c1, 2, 'garbage'));
    expect(token.code).toBe(status.INVALID_ARGUMENT);
    expect(token.details).toMatch(/page_token/);
    const anon = await grpcError(winners(c1, 0, '', new Metadata()));
    expect(anon.code).toBe(status.UNAUTHENTICATED);
  });

  it('answers UNAVAILABLE while awards.queries_disabled is on, and serves again when off', async () => {
    await setSwitch(ownDb, 'awards.queries_disabled', true);
    const err = await pollUntil(
      'ListCampaignWinners to answer UNAVAILABLE',
      () =>
        winners(c1).then(
          () => undefined,
          (e: { code: number; details: string }) => e,
        ),
      2000,
    );
    expect(err.code).toBe(status.UNAVAILABLE);
    expect(err.details).toMatch(/awards\.queries_disabled/);
    await setSwitch(ownDb, 'awards.queries_disabled', false);
    const back = await pollUntil('ListCampaignWinners to serve again', () => winners(c1).catch(() => undefined), 2000);
    expect(back.winners).toHaveLength(5);
  });
});

/** GrabService.ListOpenCampaigns over gRPC against the real Redis (a database of this file's own). */
import { Metadata, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keys } from '@redpacket/lib';
import { bearer, call, grpcError, pollUntil, testRedisDb } from '@redpacket/lib/testing';
import { CampaignState, type Campaign, type ListOpenCampaignsResponse } from '@redpacket/proto';
import { startMember } from '../src/campaign-index.js';
import { startHarness, type Harness } from './harness.js';

const OWN_DB_URL = testRedisDb(9);
const HOUR = 3600_000;

let h: Harness;
let md: Metadata;
const created: Campaign[] = [];

const create = async (startInMs: number | undefined, expiresInMs = 48 * HOUR): Promise<Campaign> => {
  const now = Date.now();
  const c = await h.create({
    startsAt: startInMs === undefined ? undefined : new Date(now + startInMs),
    expiresAt: new Date(now + (startInMs ?? 0) + expiresInMs),
  });
  created.push(c);
  return c;
};

const list = (pageSize: number, pageToken = ''): Promise<ListOpenCampaignsResponse> =>
  call(h.grab.listOpenCampaigns, h.grab, { pageSize, pageToken }, md);

/** Every page, in order, at this page size. */
async function listAll(pageSize: number): Promise<{ ids: string[]; pages: number }> {
  const ids: string[] = [];
  let token = '';
  let pages = 0;
  do {
    const res = await list(pageSize, token);
    expect(res.campaigns.length).toBeLessThanOrEqual(pageSize);
    ids.push(...res.campaigns.map((c) => c.campaignId));
    token = res.nextPageToken;
    pages++;
  } while (token !== '');
  return { ids, pages };
}

const member = (c: Campaign): string => startMember(c.startsAt!.getTime(), c.campaignId);
const listedIds = async (): Promise<string[]> => (await listAll(100)).ids;

beforeAll(async () => {
  h = await startHarness({ redisUrl: OWN_DB_URL });
  md = bearer(await h.userToken(`${h.run}-u`));
});

afterAll(async () => {
  if (created.length > 0) {
    await h.redis.zrem(keys.liveCampaigns, ...created.map((c) => c.campaignId));
  }
  await h.close();
});

describe('ListOpenCampaigns', () => {
  it('lists open and opening-soon campaigns by start time, never closed, expired, settled or later ones', async () => {
    const open = await create(undefined);
    const soon = await create(HOUR);
    const sooner = await create(10 * 60_000);
    const later = await create(30 * HOUR);
    const closed = await create(undefined);
    const settled = await create(undefined);
    const expiring = await create(undefined, 1500);
    await call(h.admin.closeCampaign, h.admin, { campaignId: closed.campaignId, reason: 'test' }, bearer(h.adminToken));
    // What settle leaves in Redis, here on an open campaign: the flag alone must hide it.
    await h.redis.hset(keys.meta(settled.campaignId), 'settled', '1');

    const mine = new Set(created.map((c) => c.campaignId));
    const first = (await list(100)).campaigns.filter((c) => mine.has(c.campaignId));
    // open and expiring may start in the same millisecond: then the id decides.
    const byStart = [open, expiring, sooner, soon].sort((a, b) => (member(a) < member(b) ? -1 : 1));
    expect(first.map((c) => c.campaignId)).toEqual(byStart.map((c) => c.campaignId));
    expect(first.map((c) => c.state)).toEqual([
      CampaignState.CAMPAIGN_STATE_OPEN,
      CampaignState.CAMPAIGN_STATE_OPEN,
      CampaignState.CAMPAIGN_STATE_SCHEDULED,
      CampaignState.CAMPAIGN_STATE_SCHEDULED,
    ]);
    const res = await list(0);
    expect(res.opensBefore!.getTime()).toBeGreaterThan(Date.now() + 23 * HOUR);
    expect(res.opensBefore!.getTime()).toBeLessThanOrEqual(Date.now() + 24 * HOUR);
    expect((await listedIds()).filter((id) => id === later.campaignId)).toEqual([]);

    // Expiry needs no timer: the next listing leaves it out and drops it from the index.
    await pollUntil('the expired campaign to leave the listing', async () =>
      (await listedIds()).includes(expiring.campaignId) ? false : true,
    );
    for (const gone of [closed, settled, expiring])
      expect(await h.redis.zscore(keys.campaignsByStart, member(gone)), gone.campaignId).toBeNull();
    expect(await h.redis.zscore(keys.campaignsByStart, member(later))).not.toBeNull();
  });

  it('pages through more than one page with no duplicates or gaps', async () => {
    const mine = [];
    for (let i = 0; i < 7; i++) mine.push(await create(2 * HOUR + i * 1000));
    const { ids, pages } = await listAll(2);
    expect(pages).toBeGreaterThan(3);
    expect(new Set(ids).size).toBe(ids.length);
    const wanted = new Set(mine.map((c) => c.campaignId));
    expect(ids.filter((id) => wanted.has(id))).toEqual(mine.map((c) => c.campaignId));
    // The whole listing is in start order.
    const all = (await list(100)).campaigns.map((c) => c.startsAt!.getTime());
    expect(all).toEqual([...all].sort((a, b) => a - b));
  });

  it('fills its index once from the live one on a deployment older than it', async () => {
    const open = await create(undefined);
    const closed = await create(HOUR);
    await call(h.admin.closeCampaign, h.admin, { campaignId: closed.campaignId, reason: 'x' }, bearer(h.adminToken));
    await h.redis.del(keys.campaignsByStart, keys.campaignsByStartFilled);
    const ids = await listedIds();
    expect(ids).toContain(open.campaignId);
    expect(ids).not.toContain(closed.campaignId);
    expect(await h.redis.exists(keys.campaignsByStartFilled)).toBe(1);
  });

  it('refuses a malformed page token or page size, and a call without a token', async () => {
    await create(undefined);
    const valid = (await list(1)).nextPageToken;
    expect(valid).not.toBe('');
    const bad = [
      'not a token!',
      Buffer.from('x|y').toString('base64url'),
      `${valid}=`,
      Buffer.from(`${'9'.repeat(15)}|bad id`).toString('base64url'),
      'A'.repeat(200),
    ];
    for (const pageToken of bad) {
      const err = await grpcError(call(h.grab.listOpenCampaigns, h.grab, { pageSize: 1, pageToken }, md));
      expect(err.code, pageToken).toBe(status.INVALID_ARGUMENT);
      expect(err.details).toMatch(/page_token/);
    }
    for (const pageSize of [-1, 101]) {
      const err = await grpcError(call(h.grab.listOpenCampaigns, h.grab, { pageSize, pageToken: '' }, md));
      expect(err.code).toBe(status.INVALID_ARGUMENT);
      expect(err.details).toMatch(/page_size/);
    }
    const err = await grpcError(call(h.grab.listOpenCampaigns, h.grab, { pageSize: 1, pageToken: '' }, new Metadata()));
    expect(err.code).toBe(status.UNAUTHENTICATED);
  });
});

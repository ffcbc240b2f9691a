/**
 * ListOpenCampaigns: the campaigns a user may grab now or soon, by start time, read page by page
 * from keys.campaignsByStart (never every campaign), with an exact cursor as the page token.
 */
import { status } from '@grpc/grpc-js';
import { invalidArgument, keys, ServiceError, type RedisClient } from '@redpacket/lib';
import { CampaignState, type Campaign, type ListOpenCampaignsResponse } from '@redpacket/proto';
import { fillStartIndex, mapBounded, parseStartMember, startBound } from './campaign-index.js';
import { getCampaign } from './campaigns.js';

/** "Opening soon": starting within this much of now (the server's default window). */
export const OPENING_SOON_MS = 24 * 3600 * 1000;
export const MAX_OPEN_PAGE_SIZE = 100;
const DEFAULT_OPEN_PAGE_SIZE = 20;
/**
 * Index members one page may look at: past closed or expired ones (each dropped once seen) a page
 * comes back short, with a token, rather than reading on without bound.
 */
const EXAMINE_PER_PAGE = 4 * MAX_OPEN_PAGE_SIZE;

export interface OpenCampaignsOptions {
  pageSize: number;
  pageToken: string;
  /** The "opening soon" window; default OPENING_SOON_MS. */
  windowMs?: number;
  nowMs?: number;
}

/** The page token is the last member looked at, base64url: opaque to clients, checked here. */
const encodeToken = (member: string): string => Buffer.from(member).toString('base64url');

function decodeToken(token: string): string {
  const member = Buffer.from(token, 'base64url').toString();
  // Re-encoding catches what Buffer's lenient decoder lets through (stray characters, padding).
  if (token.length > 120 || !parseStartMember(member) || encodeToken(member) !== token)
    throw invalidArgument('page_token', 'malformed (pass next_page_token back unchanged)');
  return member;
}

/**
 * One index member as a listed campaign, or undefined when it is not listable any more: closed,
 * expired, settled or deleted. Each of those is final (a restore re-adds a campaign it reopens),
 * so it is dropped from the index here and later pages never read it again.
 */
async function listable(redis: RedisClient, member: string, nowMs: number): Promise<Campaign | undefined> {
  const { id } = parseStartMember(member) ?? { id: '' };
  let c: Campaign | undefined;
  try {
    c = id ? await getCampaign(redis, id, nowMs) : undefined;
  } catch (err) {
    if (!(err instanceof ServiceError && err.code === status.NOT_FOUND)) throw err;
  }
  const state = c?.state;
  if (c && state !== CampaignState.CAMPAIGN_STATE_ENDED && state !== CampaignState.CAMPAIGN_STATE_SETTLED) return c;
  await redis.zrem(keys.campaignsByStart, member);
  return undefined;
}

/** A page of the campaigns open now or starting within the window, earliest start first. */
export async function listOpenCampaigns(
  redis: RedisClient,
  o: OpenCampaignsOptions,
): Promise<ListOpenCampaignsResponse> {
  if (!Number.isInteger(o.pageSize) || o.pageSize < 0 || o.pageSize > MAX_OPEN_PAGE_SIZE)
    throw invalidArgument('page_size', `must be 0-${MAX_OPEN_PAGE_SIZE}`);
  const size = o.pageSize || DEFAULT_OPEN_PAGE_SIZE;
  let cursor = o.pageToken === '' ? '-' : `(${decodeToken(o.pageToken)}`;
  const nowMs = o.nowMs ?? Date.now();
  const opensBefore = nowMs + (o.windowMs ?? OPENING_SOON_MS);
  await fillStartIndex(redis, nowMs);
  const max = `(${startBound(opensBefore)}`;
  const campaigns: Campaign[] = [];
  let examined = 0;
  let last = '';
  let more = true;
  while (more && campaigns.length < size && examined < EXAMINE_PER_PAGE) {
    const want = Math.min(size - campaigns.length, EXAMINE_PER_PAGE - examined);
    // One member past what is wanted says whether another page exists.
    const batch = await redis.zrangebylex(keys.campaignsByStart, cursor, max, 'LIMIT', 0, want + 1);
    more = batch.length > want;
    const take = batch.slice(0, want);
    if (take.length === 0) break;
    for (const c of await mapBounded(take, (m) => listable(redis, m, nowMs))) if (c) campaigns.push(c);
    examined += take.length;
    last = take[take.length - 1]!;
    cursor = `(${last}`;
  }
  return {
    campaigns,
    nextPageToken: more ? encodeToken(last) : '',
    opensBefore: new Date(opensBefore),
  };
}

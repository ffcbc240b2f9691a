/** Starts a real grab-svc server on 127.0.0.1:0 against the real Redis, with typed clients. */
import { credentials } from '@grpc/grpc-js';
import {
  createLogger,
  createRedis,
  keys,
  signToken,
  startServer,
  TokenVerifier,
  type RunningServer,
} from '@redpacket/lib';
import { bearer, call, deleteKeys, requireRedis, TEST_JWT_SECRET, TEST_REDIS_URL } from '@redpacket/lib/testing';
import {
  AdminServiceClient,
  GrabServiceClient,
  Split,
  type Campaign,
  type CreateCampaignRequest,
  type GrabResponse,
} from '@redpacket/proto';
import type { Redis } from 'ioredis';
import { registerScripts } from '../src/scripts.js';
import { createGrabServer } from '../src/server.js';

export interface Harness {
  redis: Redis;
  server: RunningServer;
  admin: AdminServiceClient;
  grab: GrabServiceClient;
  adminToken: string;
  /** A unique prefix for this harness's user ids. */
  run: string;
  userToken(user: string, extra?: { openedAtMs?: number }): Promise<string>;
  create(over?: Partial<CreateCampaignRequest>): Promise<Campaign>;
  grabAs(campaignId: string, user: string, requestId?: string): Promise<GrabResponse>;
  close(): Promise<void>;
}

export function campaignRequest(over: Partial<CreateCampaignRequest> = {}): CreateCampaignRequest {
  return {
    name: 'test campaign',
    totalCents: 10_000n,
    packetCount: 10,
    split: Split.RANDOM,
    batches: 1,
    batchIntervalMs: 0n,
    startsAt: undefined,
    expiresAt: new Date(Date.now() + 10 * 60_000),
    ownerId: 'owner-1',
    eligibility: undefined,
    ...over,
  };
}

export async function startHarness(): Promise<Harness> {
  const redis = await requireRedis();
  const client = createRedis({ url: TEST_REDIS_URL, autoPipelining: true });
  registerScripts(client);
  const log = createLogger('grab-svc-test', 'silent');
  const services = createGrabServer({ redis: client, tokens: new TokenVerifier({ secret: TEST_JWT_SECRET }), log });
  const server = await startServer({ services, host: '127.0.0.1', port: 0, log });
  const addr = `127.0.0.1:${server.port}`;
  const admin = new AdminServiceClient(addr, credentials.createInsecure());
  const grab = new GrabServiceClient(addr, credentials.createInsecure());
  const adminToken = await signToken({ secret: TEST_JWT_SECRET, userId: 'ops', role: 'admin' });
  const run = `t${Math.random().toString(36).slice(2, 8)}`;
  const created: string[] = [];
  const tokenCache = new Map<string, string>();

  const userToken = async (user: string, extra: { openedAtMs?: number } = {}): Promise<string> => {
    const k = `${user}|${extra.openedAtMs ?? ''}`;
    let t = tokenCache.get(k);
    if (!t) {
      t = await signToken({ secret: TEST_JWT_SECRET, userId: user, openedAtMs: extra.openedAtMs });
      tokenCache.set(k, t);
    }
    return t;
  };

  return {
    redis,
    server,
    admin,
    grab,
    adminToken,
    run,
    userToken,
    async create(over = {}) {
      const c = await call(admin.createCampaign, admin, campaignRequest(over), bearer(adminToken));
      created.push(c.campaignId);
      return c;
    },
    async grabAs(campaignId, user, requestId = '') {
      return call(grab.grab, grab, { campaignId, requestId }, bearer(await userToken(user)));
    },
    async close() {
      admin.close();
      grab.close();
      await server.shutdown(2000);
      for (const id of created) {
        await deleteKeys(redis, `rp:{${id}}:*`);
        await redis.zrem(keys.campaigns, id);
      }
      await client.quit();
      await redis.quit();
    },
  };
}

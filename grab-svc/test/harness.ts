/** Starts a real grab-svc server on 127.0.0.1:0 against the real Redis, with typed clients. */
import { credentials } from '@grpc/grpc-js';
import {
  createLogger,
  createRedis,
  keys,
  type Logger,
  writeEligibility,
  type EligibilityState,
  type RedisClient,
  startServer,
  type Switches,
  type RunningServer,
} from '@redpacket/lib';
import {
  bearer,
  call,
  dropCampaignKeys,
  pollUntil,
  requireRedis,
  testSigner,
  TEST_MYSQL_URL,
  TEST_REDIS_URL,
} from '@redpacket/lib/testing';
import {
  AdminServiceClient,
  GrabServiceClient,
  Split,
  type Campaign,
  type CreateCampaignRequest,
  type GrabResponse,
} from '@redpacket/proto';
import { createPool, type Pool } from '@redpacket/db';
import { depositBudget } from '@redpacket/ledger/testing';
import { startMember } from '../src/campaign-index.js';
import { EligibilityMirror } from '../src/eligibility-mirror.js';
import { registerScripts } from '../src/scripts.js';
import { createGrabServer } from '../src/server.js';

export interface HarnessOptions {
  /** REDIS_CLUSTER_NODES of a test cluster; the single test Redis when absent. */
  clusterNodes?: string;
  /** A grab-svc already running there (e.g. WORKERS=4) instead of one in this process. */
  address?: string;
  /** Separate connections to it (grabClients), so several worker processes get traffic. */
  connections?: number;
  /** Degrade switches handed to the in-process server. */
  switches?: Switches;
  /** The in-process server's logger (default silent). */
  log?: Logger;
  /** A Redis of the test file's own (testRedisDb(n)) instead of the shared test database. */
  redisUrl?: string;
  /** Handed to the in-process server (ListOpenCampaigns' window). */
  openingSoonMs?: number;
}

export interface Harness {
  /** The test's own connection (Cluster when the harness runs on one). */
  redis: RedisClient;
  eligibility: EligibilityMirror;
  /** The in-process server; undefined with `address`. */
  server: RunningServer | undefined;
  admin: AdminServiceClient;
  grab: GrabServiceClient;
  /** `connections` clients, each on a connection of its own (grab is the first). */
  grabClients: GrabServiceClient[];
  adminToken: string;
  /** A unique prefix for this harness's user ids. */
  run: string;
  userToken(user: string, extra?: { openedAtMs?: number }): Promise<string>;
  create(over?: Partial<CreateCampaignRequest>): Promise<Campaign>;
  grabAs(campaignId: string, user: string, requestId?: string): Promise<GrabResponse>;
  /** Writes eligibility as account-svc does and waits (at most 1 s) until the server's copy has it. */
  setEligibility(rows: EligibilityState[]): Promise<void>;
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

export async function startHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const redis: RedisClient = opts.clusterNodes
    ? createRedis({ url: '', clusterNodes: opts.clusterNodes })
    : await requireRedis(opts.redisUrl);
  const client = createRedis({
    url: opts.redisUrl ?? TEST_REDIS_URL,
    clusterNodes: opts.clusterNodes,
    autoPipelining: true,
  });
  registerScripts(client);
  const log = opts.log ?? createLogger('grab-svc-test', 'silent');
  const eligibility = new EligibilityMirror(client, log);
  await eligibility.start();
  const services = createGrabServer({
    redis: client,
    eligibility,
    tokens: testSigner().verifier(),
    log,
    switches: opts.switches,
    openingSoonMs: opts.openingSoonMs,
  });
  const server = opts.address ? undefined : await startServer({ services, host: '127.0.0.1', port: 0, log });
  const addr = opts.address ?? `127.0.0.1:${server!.port}`;
  const admin = new AdminServiceClient(addr, credentials.createInsecure());
  // A local subchannel pool: otherwise grpc-js shares one connection between the clients.
  const grabClients = Array.from(
    { length: opts.connections ?? 1 },
    () => new GrabServiceClient(addr, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }),
  );
  const grab = grabClients[0]!;
  const adminToken = await testSigner().sign({ userId: 'ops', role: 'admin' });
  const run = `t${Math.random().toString(36).slice(2, 8)}`;
  const created: string[] = [];
  let fundingPool: Pool | undefined;
  /** Their members of keys.campaignsByStart, removed at close like their keys. */
  const byStart: string[] = [];
  const tokenCache = new Map<string, string>();

  const userToken = async (user: string, extra: { openedAtMs?: number } = {}): Promise<string> => {
    const k = `${user}|${extra.openedAtMs ?? ''}`;
    let t = tokenCache.get(k);
    if (!t) {
      t = await testSigner().sign({ userId: user, openedAtMs: extra.openedAtMs });
      tokenCache.set(k, t);
    }
    return t;
  };

  return {
    redis,
    eligibility,
    server,
    admin,
    grab,
    grabClients,
    adminToken,
    run,
    userToken,
    async create(over = {}) {
      const req = campaignRequest(over);
      // A grab-svc main of its own (opts.address) has MySQL, so campaigns are funded: the owner's
      // budget goes in first (the in-process server here has no MySQL and creates them unfunded).
      if (opts.address) {
        fundingPool ??= createPool(TEST_MYSQL_URL, 2);
        await depositBudget(fundingPool, req.ownerId, req.totalCents);
      }
      const c = await call(admin.createCampaign, admin, req, bearer(adminToken));
      created.push(c.campaignId);
      if (c.startsAt) byStart.push(startMember(c.startsAt.getTime(), c.campaignId));
      return c;
    },
    async grabAs(campaignId, user, requestId = '') {
      return call(grab.grab, grab, { campaignId, requestId }, bearer(await userToken(user)));
    },
    async setEligibility(rows) {
      await writeEligibility(redis, rows);
      await pollUntil(
        'the eligibility change to reach grab-svc',
        () =>
          rows.every((r) => {
            const v = eligibility.verdict(r.userId);
            return v.blocked === r.blocked && v.riskScore === Math.max(0, r.riskScore);
          }),
        1000,
        2,
      );
    },
    async close() {
      admin.close();
      for (const g of grabClients) g.close();
      await server?.shutdown(2000);
      if (byStart.length > 0) await redis.zrem(keys.campaignsByStart, ...byStart);
      for (const id of created) await dropCampaignKeys(redis, id);
      eligibility.stop();
      await fundingPool?.end();
      await client.quit();
      await redis.quit();
    },
  };
}

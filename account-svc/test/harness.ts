/**
 * Test harness: account-svc (and, when asked, grab-svc) on 127.0.0.1:0 against the real MySQL
 * and Redis, generated clients, a random user-id prefix per run, and a cleanup that removes
 * exactly this run's rows and keys.
 */
import { randomBytes } from 'node:crypto';
import { credentials, type Metadata } from '@grpc/grpc-js';
import { createPool, migrate, type Pool } from '@redpacket/db';
import {
  createLogger,
  createRedis,
  keys,
  startServer,
  TokenVerifier,
  type RedisClient,
  type RunningServer,
} from '@redpacket/lib';
import { bearer, call, deleteKeys, requireRedis, testSigner, TEST_MYSQL_URL } from '@redpacket/lib/testing';
import {
  AccountServiceClient,
  AdminServiceClient,
  GrabServiceClient,
  Split,
  type Account,
  type BlockUserRequest,
  type Campaign,
  type CreateCampaignRequest,
  type Eligibility,
  type GetAccountRequest,
  type GrabRequest,
  type GrabResponse,
  type ImportUsersResponse,
  type IssueLoginCodeRequest,
  type IssueLoginCodeResponse,
  type IssueTokenRequest,
  type IssueTokenResponse,
  type RefreshTokenRequest,
  type RegisterUserRequest,
  type SetRiskScoreRequest,
  type UnblockUserRequest,
  type UserRecord,
} from '@redpacket/proto';
import { createGrabServer } from '@redpacket/grab-svc/server';
import { registerScripts } from '@redpacket/grab-svc/scripts';
import { EligibilityMirror } from '@redpacket/grab-svc/eligibility-mirror';
import type { Redis } from 'ioredis';
import { scanMirror } from '../src/eligibility-mirror.js';
import { afterAll, beforeAll } from 'vitest';
import { createAccountServer, type AccountServerDeps } from '../src/server.js';

export { bearer, testSigner };

/** Connects to the test MySQL and applies the migrations, or fails saying how to start it. */
export async function requireMysql(url = TEST_MYSQL_URL): Promise<Pool> {
  try {
    await migrate(url);
  } catch (err) {
    throw new Error(
      `MySQL is not reachable at ${url} (${(err as Error).message}); start it with: ` +
        'start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd (or ./scripts/setup.sh)',
      { cause: err },
    );
  }
  return createPool(url, 12);
}

export interface Harness {
  /** Every user id of this run starts with it. */
  prefix: string;
  pool: Pool;
  /** The test's own Redis connection (for checks and cleanup). */
  redis: Redis;
  /** The connection the servers use. */
  serverRedis: RedisClient;
  accounts: AccountServiceClient;
  grab: GrabServiceClient | undefined;
  admin: AdminServiceClient | undefined;
  adminMd: Metadata;
  tokens: TokenVerifier;
  campaigns: string[];
  close(): Promise<void>;
}

const log = createLogger('test', 'silent');

export async function startHarness(
  opts: { grab?: boolean; deps?: Partial<AccountServerDeps>; mysqlUrl?: string } = {},
): Promise<Harness> {
  const redis = await requireRedis();
  const pool = await requireMysql(opts.mysqlUrl);
  const prefix = `t${randomBytes(5).toString('hex')}-`;
  const serverRedis = createRedis({
    url: `redis://${redis.options.host}:${redis.options.port}/${redis.options.db ?? 0}`,
  });
  const tokens = testSigner().verifier();
  const servers: RunningServer[] = [];
  const stops: (() => void)[] = [];
  const account = await startServer({
    services: createAccountServer({
      pool,
      redis: serverRedis,
      tokens,
      log,
      signer: testSigner().signer,
      passwordCost: 4,
      ...opts.deps,
    }),
    host: '127.0.0.1',
    port: 0,
    log,
  });
  servers.push(account);
  const address = (p: number): string => `127.0.0.1:${p}`;
  let grab: GrabServiceClient | undefined;
  let admin: AdminServiceClient | undefined;
  if (opts.grab) {
    registerScripts(serverRedis);
    const eligibility = new EligibilityMirror(serverRedis, log);
    await eligibility.start();
    stops.push(() => eligibility.stop());
    const g = await startServer({
      services: createGrabServer({ redis: serverRedis, eligibility, tokens, log }),
      host: '127.0.0.1',
      port: 0,
      log,
    });
    servers.push(g);
    grab = new GrabServiceClient(address(g.port), credentials.createInsecure());
    admin = new AdminServiceClient(address(g.port), credentials.createInsecure());
  }
  const accounts = new AccountServiceClient(address(account.port), credentials.createInsecure());
  const adminToken = await testSigner().sign({ userId: `${prefix}admin`, role: 'admin' });
  const h: Harness = {
    prefix,
    pool,
    redis,
    serverRedis,
    accounts,
    grab,
    admin,
    adminMd: bearer(adminToken),
    tokens,
    campaigns: [],
    async close() {
      for (const c of [accounts, grab, admin]) c?.close();
      await Promise.all(servers.map((s) => s.shutdown(2000)));
      for (const stop of stops) stop();
      await cleanup(h);
      await pool.end();
      serverRedis.disconnect();
      redis.disconnect();
    },
  };
  return h;
}

/** Removes this run's users, block events, mirror entries and campaigns. */
async function cleanup(h: Harness): Promise<void> {
  const like = `${h.prefix}%`;
  await h.pool.query('DELETE FROM users WHERE user_id LIKE ?', [like]);
  await h.pool.query('DELETE FROM user_block_events WHERE user_id LIKE ?', [like]);
  await h.pool.query('DELETE FROM login_codes WHERE user_id LIKE ?', [like]);
  await scanMirror(h.redis, h.prefix, 1000, async (ids) => {
    await h.redis.srem(keys.blocked, ...ids);
    await h.redis.hdel(keys.risk, ...ids);
  });
  for (const c of h.campaigns) {
    await deleteKeys(h.redis, `rp:{${c}}:*`);
    await h.redis.zrem(keys.campaigns, c);
  }
}

/** Streams records to ImportUsers in messages of `perMessage` users. */
export function importUsers(
  client: AccountServiceClient,
  md: Metadata,
  users: Iterable<UserRecord>,
  perMessage = 1000,
): Promise<ImportUsersResponse> {
  return new Promise((resolve, reject) => {
    const stream = client.importUsers(md, (err, res) => (err ? reject(err) : resolve(res)));
    let batch: UserRecord[] = [];
    const it = users[Symbol.iterator]();
    // Honours the stream's back-pressure: write until it says stop, then wait for 'drain'.
    const pump = (): void => {
      for (;;) {
        const next = it.next();
        if (!next.done) batch.push(next.value);
        if (batch.length === perMessage || (next.done && batch.length)) {
          const ok = stream.write({ users: batch });
          batch = [];
          if (!ok && !next.done) {
            stream.once('drain', pump);
            return;
          }
        }
        if (next.done) {
          stream.end();
          return;
        }
      }
    };
    pump();
  });
}

export const user = (userId: string, extra: Partial<UserRecord> = {}): UserRecord => ({
  userId,
  displayName: '',
  password: '',
  riskScore: 0,
  role: '',
  ...extra,
});

/** The generated client's unary methods as typed promises (its overloads defeat inference). */
export function accountApi(c: AccountServiceClient) {
  return {
    registerUser: (req: RegisterUserRequest, md: Metadata) =>
      call<RegisterUserRequest, Account>(c.registerUser, c, req, md),
    // login_code is optional here: most tests sign in with a password or an admin token.
    issueToken: (req: Omit<IssueTokenRequest, 'loginCode'> & { loginCode?: string }, md: Metadata) =>
      call<IssueTokenRequest, IssueTokenResponse>(c.issueToken, c, { loginCode: '', ...req }, md),
    refreshToken: (md: Metadata) => call<RefreshTokenRequest, IssueTokenResponse>(c.refreshToken, c, {}, md),
    issueLoginCode: (req: IssueLoginCodeRequest, md: Metadata) =>
      call<IssueLoginCodeRequest, IssueLoginCodeResponse>(c.issueLoginCode, c, req, md),
    getAccount: (req: GetAccountRequest, md: Metadata) => call<GetAccountRequest, Account>(c.getAccount, c, req, md),
    blockUser: (req: BlockUserRequest, md: Metadata) => call<BlockUserRequest, Account>(c.blockUser, c, req, md),
    unblockUser: (req: UnblockUserRequest, md: Metadata) =>
      call<UnblockUserRequest, Account>(c.unblockUser, c, req, md),
    setRiskScore: (req: SetRiskScoreRequest, md: Metadata) =>
      call<SetRiskScoreRequest, Account>(c.setRiskScore, c, req, md),
  };
}

export function grabApi(g: GrabServiceClient, a: AdminServiceClient) {
  return {
    grab: (req: GrabRequest, md: Metadata) => call<GrabRequest, GrabResponse>(g.grab, g, req, md),
    createCampaign: (req: CreateCampaignRequest, md: Metadata) =>
      call<CreateCampaignRequest, Campaign>(a.createCampaign, a, req, md),
  };
}

/** Opens a campaign on grab-svc (removed at close): EQUAL 100-cent packets in one batch. */
export async function openCampaign(
  h: Harness,
  opts: { packets: number; startsAt?: Date; eligibility?: Eligibility },
): Promise<Campaign> {
  const c = await grabApi(h.grab!, h.admin!).createCampaign(
    {
      name: `account-svc test ${h.prefix}`,
      totalCents: BigInt(opts.packets * 100),
      packetCount: opts.packets,
      split: Split.EQUAL,
      batches: 1,
      batchIntervalMs: 0n,
      startsAt: opts.startsAt,
      expiresAt: new Date(Date.now() + 600_000),
      ownerId: `${h.prefix}owner`,
      eligibility: opts.eligibility,
    },
    h.adminMd,
  );
  h.campaigns.push(c.campaignId);
  return c;
}

/** Starts a harness before the file's (or describe block's) tests and closes it after them. */
export function useHarness(opts: Parameters<typeof startHarness>[0], ready: (h: Harness) => void): void {
  let h: Harness | undefined;
  beforeAll(async () => {
    h = await startHarness(opts);
    ready(h);
  });
  afterAll(async () => {
    await h?.close();
  });
}

/**
 * The demo's flow: start a Redis of its own (unless REDIS_URL is given) and every service built
 * in this checkout, open the crowd's accounts, run a gala campaign with the crowd, follow the
 * wins through gift-svc into MySQL, check the money and report. Stops everything it started,
 * also on Ctrl-C.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pc from 'picocolors';
import { migrate, DEFAULT_MYSQL_URL } from '@redpacket/db';
import { deleteCampaign, writeKeyPair, type KeyFiles } from '@redpacket/lib';
import { Redis } from 'ioredis';
import type { Campaign, CampaignStats, DeliveryStats, Reconciliation, Settlement } from '@redpacket/proto';
import type { Child } from '@redpacket/loadgen';
import { CliContext, type CliEnv } from '../context.js';
import { CliError, Exit } from '../errors.js';
import { num, plain, yuan } from '../format.js';
import { yuanToCents } from '../parse.js';
import { signUserTokens } from '../tokens.js';
import type { UserBatch } from '../users-csv.js';
import { importUserBatches } from '../users-import.js';
import { createRequest } from '../commands/campaign.js';
import { listenAddress } from '../commands/console.js';
import { startConsole, type RunningConsole } from '../console/server.js';
import { moneyChecks, type Check } from './checks.js';
import { runCrowd, type CrowdResult } from './crowd.js';
import { followMoney, trailChecks, type MoneyTrail } from './money-trail.js';
import { buildReport, outcomeList } from './report.js';
import { serviceCommand, startDurableRedis, startService, type RunningService, type ServiceName } from './services.js';

/** The options of `redpacket demo`. */
export interface DemoOptions {
  packets: number;
  total: string;
  users: number;
  batches: number;
  interval: number;
  concurrency: number;
  connections: number;
  account: boolean;
  gift: boolean;
  deliveryTimeout: number;
  keep?: boolean;
  /** Where the operator's console listens (host:port; port 0 = a free one), or false for none. */
  console: string | false;
  /** Keep everything running after the report until Ctrl-C (to look around in the console). */
  hold?: boolean;
}

/** The early birds (2% of the crowd) press before the start. */
const EARLY_SHARE = 0.02;
/** Users per ImportUsers message. */
const IMPORT_BATCH = 1000;

/** What the demo started and created: what the clean-up stops and removes. */
interface Session {
  json: boolean;
  ownRedis: Awaited<ReturnType<typeof startDurableRedis>> | undefined;
  redisUrl: string;
  started: RunningService[];
  children: Child[];
  demoCtx?: CliContext;
  console?: { running: RunningConsole; redis: Redis };
  /** The run's own key pair, removed at the end. */
  keyDir?: string;
  campaign?: Campaign;
  closed: boolean;
}

function log(json: boolean, msg: string): void {
  if (!json) process.stderr.write(`${pc.dim('›')} ${msg}\n`);
}

/** Fails fast, with exit 3, when Redis is down: grab-svc would start and answer every grab with an error. */
async function requireRedis(url: string): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    throw new CliError(`Redis is not reachable at ${url} (${(err as Error).message})`, Exit.unavailable);
  } finally {
    redis.disconnect();
  }
}

/** Closes the campaign if the run stopped early, stops every child, removes the campaign's keys. */
async function stopAll(s: Session, o: DemoOptions): Promise<void> {
  const campaignId = s.campaign?.campaignId;
  if (s.demoCtx && campaignId && !s.closed) {
    const admin = s.demoCtx.admin();
    await admin.call(admin.client.closeCampaign, { campaignId, reason: 'demo stopped' }).catch(() => undefined);
  }
  await s.console?.running.close();
  s.console?.redis.disconnect();
  s.demoCtx?.close();
  for (const c of s.children.reverse()) await c.stop();
  await s.ownRedis?.stop();
  if (s.keyDir) rmSync(s.keyDir, { recursive: true, force: true });
  // gift-svc's deliveries need the keys until it is done; a Redis of the demo's own is gone anyway
  const gift = s.started.some((x) => x.name === 'gift-svc');
  if (s.campaign && campaignId && !o.keep && !gift && !s.ownRedis) {
    const redis = new Redis(s.redisUrl, { maxRetriesPerRequest: 1 });
    await deleteCampaign(redis, campaignId, { batches: o.batches, subPools: s.campaign.subPools ?? 1 });
    await redis.quit();
  }
}

/** Applies the migrations to MySQL (exit 3 when it is down); returns how many were applied. */
async function applyMigrations(json: boolean, mysqlUrl: string): Promise<number> {
  log(json, `applying migrations to ${new URL(mysqlUrl).host}`);
  const applied = await migrate(mysqlUrl).catch((err: unknown) => {
    throw new CliError(`migrations failed (is MySQL up at ${mysqlUrl}?): ${(err as Error).message}`, Exit.unavailable);
  });
  return applied.length;
}

/** Starts grab-svc and, if built and wanted, account-svc and gift-svc; a context on them. */
async function startServices(
  ctx: CliContext,
  o: DemoOptions,
  s: Session,
  childEnv: Record<string, string>,
  keyFiles: KeyFiles,
): Promise<CliContext> {
  const wanted: ServiceName[] = ['grab-svc'];
  if (o.account && serviceCommand('account-svc')) wanted.push('account-svc');
  if (o.gift && serviceCommand('gift-svc')) wanted.push('gift-svc');
  for (const name of wanted) {
    const svc = await startService(name, childEnv, (c) => s.children.push(c));
    s.started.push(svc);
    log(s.json, `${name} serves on ${svc.address} (pid ${svc.pid})`);
  }
  const addr = (name: ServiceName): string | undefined => s.started.find((x) => x.name === name)?.address;
  return new CliContext({
    ...ctx.opts,
    grabAddr: addr('grab-svc')!,
    accountAddr: addr('account-svc') ?? ctx.opts.accountAddr,
    giftAddr: addr('gift-svc') ?? ctx.opts.giftAddr,
    token: undefined,
    privateKey: keyFiles.privateKeyFile,
  });
}

/** The crowd as ImportUsers batches: pre-opened accounts with no password. */
async function* crowdBatches(userIds: string[]): AsyncGenerator<UserBatch> {
  for (let i = 0; i < userIds.length; i += IMPORT_BATCH) {
    const users = userIds
      .slice(i, i + IMPORT_BATCH)
      .map((userId) => ({ userId, displayName: userId, password: '', riskScore: 0, role: '' }));
    yield { users, bytesRead: 0, rejected: [] };
  }
}

/** Pre-opens the crowd's accounts (`users import`'s streaming); a failure is reported, not fatal. */
async function importCrowd(demoCtx: CliContext, json: boolean, userIds: string[]): Promise<unknown> {
  log(json, `pre-opening ${num(userIds.length)} users in account-svc`);
  return importUserBatches(demoCtx, crowdBatches(userIds), { deadlineMs: 120_000 }).then(
    (r) => plain(r.response),
    (err: unknown) => ({ error: (err as Error).message }),
  );
}

/** The operator budget the demo's campaign is funded from (CreateCampaign debits operator:<owner>). */
const DEMO_OWNER = 'demo-owner';

/**
 * Brings the campaign's total into the owner's budget with AccountService.Deposit (idempotent by
 * the run's request id): CreateCampaign refuses a campaign its owner cannot fund.
 */
async function depositBudget(demoCtx: CliContext, json: boolean, run: string, totalCents: bigint): Promise<void> {
  log(json, `depositing ${yuan(totalCents)} into operator:${DEMO_OWNER}`);
  const account = demoCtx.account();
  await account.call(account.client.deposit, {
    accountId: `operator:${DEMO_OWNER}`,
    amountCents: totalCents,
    requestId: `demo-budget-${run}`,
    note: `demo ${run} budget`,
  });
}

/** Creates the gala campaign, opening its first batch at `startsAt`. */
async function createCampaign(
  demoCtx: CliContext,
  o: DemoOptions,
  run: string,
  totalCents: bigint,
  startsAt: number,
): Promise<Campaign> {
  const admin = demoCtx.admin();
  return admin.call(
    admin.client.createCampaign,
    createRequest({
      name: `demo ${run}`,
      totalCents: String(totalCents),
      packets: o.packets,
      split: 'random',
      batches: o.batches,
      interval: o.interval,
      startsAt: new Date(startsAt).toISOString(),
      duration: 600_000,
      owner: DEMO_OWNER,
    }),
  );
}

/** gift-svc's answers after the crowd: delivery (waited for), settle, reconcile. */
interface Pipeline {
  delivery?: DeliveryStats;
  deliverySeconds?: number;
  settlement?: Settlement;
  reconciliation?: Reconciliation;
  /** The steps that failed: reported as failed checks, not fatal. */
  failures: Check[];
}

/** Waits until gift-svc has delivered every win (or the timeout), then settles and reconciles. */
async function followPipeline(
  demoCtx: CliContext,
  o: DemoOptions,
  campaignId: string,
  stats: CampaignStats,
  firstReleaseMs: number,
): Promise<Pipeline> {
  const p: Pipeline = { failures: [] };
  const attempt = async <T>(what: string, f: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await f();
    } catch (err) {
      p.failures.push({ what, ok: false, detail: (err as Error).message });
      return undefined;
    }
  };
  const gift = demoCtx.gift();
  const admin = demoCtx.admin();
  const deadline = Date.now() + o.deliveryTimeout;
  p.delivery = await attempt('gift-svc delivery stats', async () => {
    for (;;) {
      const d = await gift.call(gift.client.getDeliveryStats, { campaignId });
      const done = d.delivered >= BigInt(stats.packetsClaimed) && d.inFlight === 0n;
      if (done || Date.now() > deadline) return d;
      await new Promise((r) => setTimeout(r, 250));
    }
  });
  if (p.delivery) p.deliverySeconds = ((p.delivery.lastDeliveredAt?.getTime() ?? Date.now()) - firstReleaseMs) / 1000;
  p.settlement = await attempt('settle', () => admin.call(admin.client.settleCampaign, { campaignId }));
  p.reconciliation = await attempt('reconcile', () => admin.call(admin.client.reconcileCampaign, { campaignId }));
  return p;
}

/** Runs the crowd against the campaign's batches, logging each wave. */
function pressCrowd(
  s: Session,
  o: DemoOptions,
  campaignId: string,
  userIds: string[],
  tokens: string[],
  releaseAtMs: number[],
): Promise<CrowdResult> {
  return runCrowd({
    address: s.started.find((x) => x.name === 'grab-svc')!.address,
    tls: s.demoCtx?.tls,
    campaignId,
    userIds,
    tokens,
    batches: o.batches,
    releaseAtMs,
    concurrency: o.concurrency,
    connections: o.connections,
    earlyShare: EARLY_SHARE,
    persistentShare: 0.6,
    winnerRetryShare: 0.1,
    onWave: (w) =>
      log(
        s.json,
        `${w.name}: ${num(w.calls)} grabs at ${num(w.grabsPerSecond)}/s, p99 ${w.p99Ms.toFixed(1)} ms — ${outcomeList(w.outcomes)}`,
      ),
  });
}

/** `redpacket demo`: the whole run; exit 7 when the money check fails. */
export async function runDemo(ctx: CliContext, o: DemoOptions, env: CliEnv): Promise<void> {
  const t0 = Date.now();
  const json = ctx.json;
  // Without REDIS_URL the demo runs the shipped durable configuration: a redis-server of its own
  // with appendonly yes + appendfsync always, under grab-svc's default policy (aof).
  const ownRedis = env.REDIS_URL ? undefined : await startDurableRedis();
  const s: Session = {
    json,
    ownRedis,
    redisUrl: env.REDIS_URL ?? ownRedis!.server.url,
    started: [],
    children: [],
    closed: false,
  };
  const durability = env.REDIS_URL
    ? (env.REDIS_DURABILITY ?? 'aof')
    : `aof (appendfsync always, a redis-server of the demo's own on :${ownRedis!.server.port})`;
  const mysqlUrl = env.MYSQL_URL ?? DEFAULT_MYSQL_URL;
  // A key pair of this run's own: no well-known key, and nothing for the operator to make first.
  const keyDir = mkdtempSync(join(tmpdir(), 'redpacket-demo-keys-'));
  const keyFiles = writeKeyPair(keyDir);
  s.keyDir = keyDir;
  const totalCents = yuanToCents(o.total);
  const run = randomBytes(3).toString('hex');
  let cleaned: Promise<void> | undefined;
  const cleanup = (): Promise<void> => (cleaned ??= stopAll(s, o));
  const onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`\n${signal}: stopping the services the demo started...\n`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    await requireRedis(s.redisUrl);
    const migrations = await applyMigrations(json, mysqlUrl);
    const demoCtx = await startServices(ctx, o, s, childEnv(env, s.redisUrl, mysqlUrl, keyFiles, ctx), keyFiles);
    s.demoCtx = demoCtx;
    if (o.console !== false) await openConsole(s, demoCtx, o.console);
    const hasGift = s.started.some((x) => x.name === 'gift-svc');
    const hasAccount = s.started.some((x) => x.name === 'account-svc');

    const userIds = Array.from({ length: o.users }, (_, i) => `demo-${run}-${i}`);
    const imported = hasAccount ? await importCrowd(demoCtx, json, userIds) : null;
    log(json, `signing ${num(o.users)} user tokens`);
    const tSign = Date.now();
    const tokens = await signUserTokens(demoCtx.signer, `demo-${run}-`, o.users);
    const signMs = Date.now() - tSign;

    // the early birds must be answered before the start, even on a busy host
    const startsAt = Date.now() + 1000 + Math.ceil(o.users * EARLY_SHARE) * 2;
    if (hasAccount) await depositBudget(demoCtx, json, run, totalCents);
    const campaign = await createCampaign(demoCtx, o, run, totalCents, startsAt);
    s.campaign = campaign;
    const campaignId = campaign.campaignId;
    log(
      json,
      `campaign ${campaignId}: ${yuan(totalCents)} in ${num(o.packets)} packets, ${o.batches} batches ${o.interval} ms apart`,
    );
    const firstMs = campaign.startsAt?.getTime() ?? startsAt;
    const releaseAtMs = Array.from({ length: o.batches }, (_, i) => firstMs + i * o.interval);
    const crowd = await pressCrowd(s, o, campaignId, userIds, tokens, releaseAtMs);

    const admin = demoCtx.admin();
    const stats = await admin.call(admin.client.getCampaignStats, { campaignId });
    await admin.call(admin.client.closeCampaign, { campaignId, reason: 'demo finished' });
    s.closed = true;

    if (hasGift) log(json, 'waiting for gift-svc to deliver every win');
    const pipe: Pipeline = hasGift
      ? await followPipeline(demoCtx, o, campaignId, stats, releaseAtMs[0]!)
      : { failures: [] };
    // the money after settle: a few winners spend (withdraw) part of what they won, then the audit
    const trail: MoneyTrail | undefined = hasAccount
      ? await followMoney({
          demoCtx,
          run,
          totalCents,
          crowd: pipe.delivery ? crowd : undefined,
          userIds,
          tokens,
          settlement: pipe.settlement,
        })
      : undefined;
    const checks = [
      ...moneyChecks({ totalCents, stats, crowd, ...pipe }),
      ...pipe.failures,
      ...(trail ? trailChecks(trail) : []),
    ];
    const report = buildReport({
      o,
      run,
      campaignId,
      totalCents,
      services: s.started,
      durability,
      migrations,
      imported,
      signMs,
      crowd,
      stats,
      delivery: pipe.delivery,
      deliverySeconds: pipe.deliverySeconds,
      settlement: pipe.settlement,
      reconciliation: pipe.reconciliation,
      trail,
      checks,
      seconds: (Date.now() - t0) / 1000,
      startMs: releaseAtMs[0]!,
    });
    if (o.hold) {
      ctx.print(report.json, () => report.human);
      log(json, `holding everything running${s.console ? ` (console ${s.console.running.url})` : ''}: Ctrl-C to stop`);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
      await cleanup();
    } else {
      await cleanup();
      ctx.print(report.json, () => report.human);
    }
    if (checks.some((c) => !c.ok)) throw new CliError('the money check failed (see the report)', Exit.inconsistent);
  } finally {
    await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** The operator's console beside the services, on the demo's Redis; its address goes to stderr at once. */
async function openConsole(s: Session, demoCtx: CliContext, listen: string): Promise<void> {
  const { host, port } = listenAddress(listen);
  const redis = new Redis(s.redisUrl, { maxRetriesPerRequest: 1 });
  const running = await startConsole({ ctx: demoCtx, redis, host, port });
  s.console = { running, redis };
  // stderr even with --json: the address is for the person watching, not for the report
  process.stderr.write(`${pc.bold('console')} ${running.url}  (sign in: ${running.loginUrl})\n`);
}

/** The services' environment: the demo's Redis, MySQL, RabbitMQ, its key pair and the CLI's TLS files. */
function childEnv(
  env: CliEnv,
  redisUrl: string,
  mysqlUrl: string,
  keyFiles: KeyFiles,
  ctx: CliContext,
): Record<string, string> {
  const { tlsCert, tlsKey, tlsCa } = ctx.opts;
  return {
    // the services serve mTLS with the CLI's own certificate when it was given one (flags or env)
    ...(ctx.tls ? { GRPC_TLS_CERT_FILE: tlsCert!, GRPC_TLS_KEY_FILE: tlsKey!, GRPC_TLS_CA_FILE: tlsCa! } : {}),
    REDIS_URL: redisUrl,
    MYSQL_URL: mysqlUrl,
    AMQP_URL: env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
    JWT_PRIVATE_KEY_FILE: keyFiles.privateKeyFile,
    JWT_JWKS_FILE: keyFiles.jwksFile,
    ...(env.REDIS_DURABILITY ? { REDIS_DURABILITY: env.REDIS_DURABILITY } : {}),
    // grab-svc's relay and settle timer act on the demo's campaign only, not on every campaign
    // of a Redis it may share with others.
    RELAY_SCOPE: 'created-here',
  };
}

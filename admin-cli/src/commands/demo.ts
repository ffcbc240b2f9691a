/**
 * `redpacket demo` (root `npm start`): the main job. Applies migrations, starts every service
 * built in this checkout, runs a gala campaign end to end with a crowd of users, and prints a
 * report with the money check to the cent. Stops everything it started, also on Ctrl-C.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import pc from 'picocolors';
import { migrate, DEFAULT_MYSQL_URL } from '@redpacket/db';
import { keys, writeKeyPair } from '@redpacket/lib';
import { Redis } from 'ioredis';
import type { CampaignStats, DeliveryStats, Reconciliation, Settlement } from '@redpacket/proto';
import { action, examples } from '../action.js';
import { CliContext, type CliEnv } from '../context.js';
import { CliError, Exit } from '../errors.js';
import { keyValueTable, num, plain, table, yuan } from '../format.js';
import { asDuration, asInt, yuanToCents } from '../parse.js';
import { percentile, type Child } from '@redpacket/loadgen';
import { runCrowd, type CrowdResult } from '../demo/crowd.js';
import {
  serviceCommand,
  startDurableRedis,
  startService,
  type RunningService,
  type ServiceName,
} from '../demo/services.js';
import { signUserTokens } from '../tokens.js';
import { createRequest, reconciliationRows, settlementRows } from './campaign.js';

interface DemoOptions {
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
}

interface Check {
  what: string;
  ok: boolean;
  detail: string;
}

function log(json: boolean, msg: string): void {
  if (!json) process.stderr.write(`${pc.dim('›')} ${msg}\n`);
}

async function demo(ctx: CliContext, o: DemoOptions, env: CliEnv): Promise<void> {
  const t0 = Date.now();
  const json = ctx.json;
  // Without REDIS_URL the demo runs the shipped durable configuration: a redis-server of its own
  // with appendonly yes + appendfsync always, under grab-svc's default policy (aof).
  const ownRedis = env.REDIS_URL ? undefined : await startDurableRedis();
  const redisUrl = env.REDIS_URL ?? ownRedis!.server.url;
  const durability = env.REDIS_URL
    ? (env.REDIS_DURABILITY ?? 'aof')
    : `aof (appendfsync always, a redis-server of the demo's own on :${ownRedis!.server.port})`;
  const mysqlUrl = env.MYSQL_URL ?? DEFAULT_MYSQL_URL;
  // A key pair of this run's own: no well-known key, and nothing for the operator to make first.
  const keyDir = mkdtempSync(join(tmpdir(), 'redpacket-demo-keys-'));
  const demoKeys = writeKeyPair(keyDir);
  const totalCents = yuanToCents(o.total);
  const run = randomBytes(3).toString('hex');
  const started: RunningService[] = [];
  const children: Child[] = [];
  let demoCtx: CliContext | undefined;
  let campaignId: string | undefined;
  let closed = false;
  let cleaned: Promise<void> | undefined;

  const cleanup = (): Promise<void> =>
    (cleaned ??= (async () => {
      if (demoCtx && campaignId && !closed) {
        const admin = demoCtx.admin();
        await admin.call(admin.client.closeCampaign, { campaignId, reason: 'demo stopped' }).catch(() => undefined);
      }
      demoCtx?.close();
      for (const c of children.reverse()) await c.stop();
      await ownRedis?.stop();
      rmSync(keyDir, { recursive: true, force: true });
      const gift = started.some((s) => s.name === 'gift-svc');
      if (campaignId && !o.keep && !gift && !ownRedis) {
        const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
        const id = campaignId;
        const batchKeys = Array.from({ length: o.batches }, (_, i) => keys.batch(id, i));
        await redis.del(keys.meta(id), keys.stats(id), keys.claims(id), keys.outbox(id), keys.state(id), ...batchKeys);
        await redis.zrem(keys.campaigns, id);
        await redis.quit();
      }
    })());
  const onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`\n${signal}: stopping the services the demo started...\n`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    await requireRedis(redisUrl);
    log(json, `applying migrations to ${new URL(mysqlUrl).host}`);
    const applied = await migrate(mysqlUrl).catch((err: unknown) => {
      throw new CliError(
        `migrations failed (is MySQL up at ${mysqlUrl}?): ${(err as Error).message}`,
        Exit.unavailable,
      );
    });

    const wanted: ServiceName[] = ['grab-svc'];
    if (o.account && serviceCommand('account-svc')) wanted.push('account-svc');
    if (o.gift && serviceCommand('gift-svc')) wanted.push('gift-svc');
    const childEnv = {
      REDIS_URL: redisUrl,
      MYSQL_URL: mysqlUrl,
      AMQP_URL: env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
      JWT_PRIVATE_KEY_FILE: demoKeys.privateKeyFile,
      JWT_JWKS_FILE: demoKeys.jwksFile,
      ...(env.REDIS_DURABILITY ? { REDIS_DURABILITY: env.REDIS_DURABILITY } : {}),
      // grab-svc's relay and settle timer act on the demo's campaign only, not on every campaign
      // of a Redis it may share with others.
      RELAY_SCOPE: 'created-here',
    };
    for (const name of wanted) {
      const svc = await startService(name, childEnv, (c) => children.push(c));
      started.push(svc);
      log(json, `${name} serves on ${svc.address} (pid ${svc.pid})`);
    }
    const addr = (name: ServiceName): string | undefined => started.find((s) => s.name === name)?.address;
    demoCtx = new CliContext({
      ...ctx.opts,
      grabAddr: addr('grab-svc')!,
      accountAddr: addr('account-svc') ?? ctx.opts.accountAddr,
      giftAddr: addr('gift-svc') ?? ctx.opts.giftAddr,
      token: undefined,
      privateKey: demoKeys.privateKeyFile,
    });
    const hasAccount = wanted.includes('account-svc');
    const hasGift = wanted.includes('gift-svc');

    const userIds = Array.from({ length: o.users }, (_, i) => `demo-${run}-${i}`);
    let imported: unknown = null;
    if (hasAccount) {
      log(json, `pre-opening ${num(o.users)} users in account-svc`);
      imported = await importCrowd(demoCtx, userIds).catch((err: unknown) => ({ error: (err as Error).message }));
    }
    log(json, `signing ${num(o.users)} user tokens`);
    const tSign = Date.now();
    const tokens = await signUserTokens(demoCtx.signer, `demo-${run}-`, o.users);
    const signMs = Date.now() - tSign;

    const admin = demoCtx.admin();
    // the early birds (2% of the crowd) must be answered before the start, even on a busy host
    const earlyShare = 0.02;
    const startsAt = Date.now() + 1000 + Math.ceil(o.users * earlyShare) * 2;
    const campaign = await admin.call(
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
        owner: 'demo-owner',
      }),
    );
    const id = campaign.campaignId;
    campaignId = id;
    log(
      json,
      `campaign ${campaignId}: ${yuan(totalCents)} in ${num(o.packets)} packets, ${o.batches} batches ${o.interval} ms apart`,
    );
    const releaseAtMs = Array.from(
      { length: o.batches },
      (_, i) => (campaign.startsAt?.getTime() ?? startsAt) + i * o.interval,
    );
    const crowd = await runCrowd({
      target: `http://${addr('grab-svc')}`,
      campaignId,
      userIds,
      tokens,
      batches: o.batches,
      releaseAtMs,
      concurrency: o.concurrency,
      connections: o.connections,
      earlyShare,
      persistentShare: 0.6,
      winnerRetryShare: 0.1,
      onWave: (w) =>
        log(
          json,
          `${w.name}: ${num(w.calls)} grabs at ${num(w.grabsPerSecond)}/s, p99 ${w.p99Ms.toFixed(1)} ms — ` +
            Object.entries(w.outcomes)
              .map(([k, v]) => `${k} ${num(v)}`)
              .join(', '),
        ),
    });

    const stats = await admin.call(admin.client.getCampaignStats, { campaignId });
    await admin.call(admin.client.closeCampaign, { campaignId, reason: 'demo finished' });
    closed = true;

    let delivery: DeliveryStats | undefined;
    let deliverySeconds: number | undefined;
    let settlement: Settlement | undefined;
    let reconciliation: Reconciliation | undefined;
    // the pipeline steps are reported, not fatal: a failure shows up as a failed check
    const failures: Check[] = [];
    const attempt = async <T>(what: string, f: () => Promise<T>): Promise<T | undefined> => {
      try {
        return await f();
      } catch (err) {
        failures.push({ what, ok: false, detail: (err as Error).message });
        return undefined;
      }
    };
    if (hasGift) {
      log(json, 'waiting for gift-svc to deliver every win');
      const gift = demoCtx.gift();
      const deadline = Date.now() + o.deliveryTimeout;
      delivery = await attempt('gift-svc delivery stats', async () => {
        for (;;) {
          const d = await gift.call(gift.client.getDeliveryStats, { campaignId: id });
          const done = d.delivered >= BigInt(stats.packetsClaimed) && d.inFlight === 0n;
          if (done || Date.now() > deadline) return d;
          await new Promise((r) => setTimeout(r, 250));
        }
      });
      if (delivery) deliverySeconds = ((delivery.lastDeliveredAt?.getTime() ?? Date.now()) - releaseAtMs[0]!) / 1000;
      settlement = await attempt('settle', () => admin.call(admin.client.settleCampaign, { campaignId: id }));
      reconciliation = await attempt('reconcile', () => admin.call(admin.client.reconcileCampaign, { campaignId: id }));
    }

    const checks = [...moneyChecks(totalCents, stats, crowd, settlement, reconciliation, delivery), ...failures];
    const report = buildReport({
      o,
      run,
      campaignId,
      totalCents,
      services: started,
      durability,
      migrations: applied.length,
      imported,
      signMs,
      crowd,
      stats,
      delivery,
      deliverySeconds,
      settlement,
      reconciliation,
      checks,
      seconds: (Date.now() - t0) / 1000,
      startMs: releaseAtMs[0]!,
    });
    await cleanup();
    ctx.print(report.json, () => report.human);
    if (checks.some((c) => !c.ok)) throw new CliError('the money check failed (see the report)', Exit.inconsistent);
  } finally {
    await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
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

async function importCrowd(ctx: CliContext, userIds: string[]): Promise<unknown> {
  const account = ctx.account();
  const md = await ctx.adminMetadata();
  return new Promise((resolve, reject) => {
    const stream = account.client.importUsers(md, { deadline: Date.now() + 120_000 }, (err, res) =>
      err ? reject(err) : resolve(plain(res)),
    );
    for (let i = 0; i < userIds.length; i += 1000) {
      stream.write({
        users: userIds
          .slice(i, i + 1000)
          .map((userId) => ({ userId, displayName: userId, password: '', riskScore: 0, role: '' })),
      });
    }
    stream.end();
  });
}

function moneyChecks(
  total: bigint,
  s: CampaignStats,
  crowd: CrowdResult,
  settlement: Settlement | undefined,
  reconciliation: Reconciliation | undefined,
  delivery: DeliveryStats | undefined,
): Check[] {
  const wonSum = [...crowd.wins.values()].reduce((a, w) => a + w.amountCents, 0n);
  const checks: Check[] = [
    {
      what: 'claimed + remaining = total (GetCampaignStats)',
      ok: s.amountClaimedCents + s.amountRemainingCents === total && s.amountTotalCents === total,
      detail: `${yuan(s.amountClaimedCents)} + ${yuan(s.amountRemainingCents)} = ${yuan(s.amountClaimedCents + s.amountRemainingCents)} of ${yuan(total)}`,
    },
    {
      what: "users' own WON answers = claimed",
      ok: wonSum === s.amountClaimedCents && crowd.wins.size === s.packetsClaimed,
      detail: `${num(crowd.wins.size)} winners hold ${yuan(wonSum)}; Redis says ${num(s.packetsClaimed)} packets, ${yuan(s.amountClaimedCents)}`,
    },
    {
      what: 'one packet per user, no packet twice, retries answered the same',
      ok: crowd.violations.length === 0,
      detail: crowd.violations.length ? crowd.violations.slice(0, 5).join('; ') : 'no violation',
    },
  ];
  // the script counts a same-id retry of a win as ALREADY_GRABBED, while the caller sees WON again
  const answers = (k: string): bigint => BigInt(crowd.outcomes[k] ?? 0);
  const counted = s.wonCount + s.alreadyGrabbedCount;
  checks.push({
    what: 'outcome counters = the answers the crowd got',
    ok:
      s.wonCount === BigInt(crowd.wins.size) &&
      counted === answers('WON') + answers('ALREADY_GRABBED') &&
      s.soldOutCount === answers('SOLD_OUT') &&
      s.notStartedCount === answers('NOT_STARTED') &&
      s.endedCount === answers('ENDED') &&
      s.forbiddenCount === answers('FORBIDDEN'),
    detail:
      `won ${num(s.wonCount)} + already ${num(s.alreadyGrabbedCount)} = ${num(counted)} WON/ALREADY_GRABBED answers, ` +
      `sold out ${num(s.soldOutCount)}, not started ${num(s.notStartedCount)}`,
  });
  if (delivery) {
    checks.push({
      what: 'every win delivered into MySQL',
      ok: delivery.delivered === BigInt(s.packetsClaimed) && delivery.deliveredCents === s.amountClaimedCents,
      detail: `${num(delivery.delivered)} awards, ${yuan(delivery.deliveredCents)}; ${num(delivery.deadLettered)} dead letters`,
    });
  }
  if (settlement) {
    checks.push({
      what: 'awarded + refund = total (SettleCampaign)',
      ok: settlement.amountAwardedCents + settlement.refundCents === total,
      detail: `${yuan(settlement.amountAwardedCents)} + ${yuan(settlement.refundCents)} = ${yuan(settlement.amountAwardedCents + settlement.refundCents)}`,
    });
  }
  if (reconciliation) {
    checks.push({
      what: 'Redis and MySQL agree (ReconcileCampaign)',
      ok: reconciliation.consistent,
      detail: reconciliation.differences.join('; ') || 'consistent',
    });
  }
  return checks;
}

function buildReport(r: {
  o: DemoOptions;
  run: string;
  campaignId: string;
  totalCents: bigint;
  services: RunningService[];
  /** grab-svc's durability policy and the Redis it ran on. */
  durability: string;
  migrations: number;
  imported: unknown;
  signMs: number;
  crowd: CrowdResult;
  stats: CampaignStats;
  delivery: DeliveryStats | undefined;
  deliverySeconds: number | undefined;
  settlement: Settlement | undefined;
  reconciliation: Reconciliation | undefined;
  checks: Check[];
  seconds: number;
  /** When the first batch opened: wave times are shown from there. */
  startMs: number;
}): { json: unknown; human: string } {
  const { crowd, stats: s } = r;
  const lat = Object.fromEntries(
    [50, 90, 99, 99.9].map((p) => [`p${p}`, Number(percentile(crowd.latenciesMs, p).toFixed(2))]),
  );
  // calls over the time calls were in flight: the idle waits for the next batch do not count
  const busySeconds = crowd.waves.reduce((t, w) => t + w.ms, 0) / 1000;
  const grabsPerSecond = Math.round(crowd.calls / Math.max(busySeconds, 0.001));
  const peak = Math.max(...crowd.waves.map((w) => w.grabsPerSecond));
  const names = ['grab-svc', 'account-svc', 'gift-svc'] as const;
  const absent = names.filter((n) => !r.services.some((s) => s.name === n));
  const json = {
    ok: r.checks.every((c) => c.ok),
    campaignId: r.campaignId,
    sizes: {
      packets: r.o.packets,
      totalCents: r.totalCents.toString(),
      users: r.o.users,
      batches: r.o.batches,
      intervalMs: r.o.interval,
    },
    services: r.services.map((x) => ({ name: x.name, port: x.port, pid: x.pid })),
    durability: r.durability,
    notStarted: absent,
    migrationsApplied: r.migrations,
    imported: r.imported,
    tokenSigningMs: r.signMs,
    calls: crowd.calls,
    outcomes: crowd.outcomes,
    errors: crowd.errors,
    grabsPerSecond,
    peakGrabsPerSecond: peak,
    pressingSeconds: Number(busySeconds.toFixed(2)),
    grabWindowSeconds: Number(crowd.grabSeconds.toFixed(2)),
    latencyMs: lat,
    waves: crowd.waves.map(({ startedAtMs, ...w }) => ({ ...w, startedAt: new Date(startedAtMs).toISOString() })),
    stats: plain(s),
    money: {
      totalCents: r.totalCents.toString(),
      claimedCents: s.amountClaimedCents.toString(),
      remainingCents: s.amountRemainingCents.toString(),
      winners: crowd.wins.size,
      wonAnswersCents: [...crowd.wins.values()].reduce((a, w) => a + w.amountCents, 0n).toString(),
    },
    delivery: r.delivery ? { ...(plain(r.delivery) as object), seconds: r.deliverySeconds } : null,
    settlement: r.settlement ? plain(r.settlement) : null,
    reconciliation: r.reconciliation ? plain(r.reconciliation) : null,
    checks: r.checks,
    seconds: Number(r.seconds.toFixed(1)),
  };
  const outcomeRows = ['WON', 'ALREADY_GRABBED', 'SOLD_OUT', 'NOT_STARTED', 'ENDED', 'FORBIDDEN'].map((k) => [
    k,
    num(crowd.outcomes[k] ?? 0),
  ]);
  const errorCount = Object.values(crowd.errors).reduce((a, b) => a + b, 0);
  if (errorCount) outcomeRows.push(['gRPC errors', num(errorCount)]);
  const lines = [
    pc.bold(`Red packet demo — campaign ${r.campaignId}`),
    keyValueTable([
      [
        'campaign',
        `${yuan(r.totalCents)} in ${num(r.o.packets)} packets, ${r.o.batches} batches ${r.o.interval} ms apart`,
      ],
      [
        'crowd',
        `${num(r.o.users)} users (tokens signed in ${(r.signMs / 1000).toFixed(1)} s), ${num(crowd.calls)} grab calls: ` +
          'early birds, losers and winners pressing again',
      ],
      ['services started', r.services.map((x) => `${x.name} :${x.port}`).join(', ')],
      ['not in this build', absent.length ? absent.join(', ') : '-'],
      ['durability', r.durability],
      [
        'grabs/s',
        `${num(grabsPerSecond)} while the crowd pressed (${busySeconds.toFixed(1)} s), ${num(peak)} in the busiest wave`,
      ],
      ['latency', `p50 ${lat['p50']} ms, p90 ${lat['p90']} ms, p99 ${lat['p99']} ms, p99.9 ${lat['p99.9']} ms`],
      ['claimed', `${num(s.packetsClaimed)} of ${num(s.packetsTotal)} packets, ${yuan(s.amountClaimedCents)}`],
      [
        'delivery',
        r.delivery
          ? `${num(r.delivery.delivered)} delivered in ${r.deliverySeconds?.toFixed(1)} s after the first release, ${num(r.delivery.deadLettered)} dead letters`
          : 'n/a (gift-svc not in this build: no delivery, settle or reconcile)',
      ],
    ]),
    table(
      ['wave', 'from', 'calls', 'grabs/s', 'p50 ms', 'p99 ms', 'outcomes'],
      crowd.waves.map((w) => [
        w.name,
        `${((w.startedAtMs - r.startMs) / 1000).toFixed(1)} s`,
        num(w.calls),
        num(w.grabsPerSecond),
        w.p50Ms.toFixed(1),
        w.p99Ms.toFixed(1),
        Object.entries(w.outcomes)
          .map(([k, v]) => `${k} ${num(v)}`)
          .join(', ') + (w.errors ? `, errors ${num(w.errors)}` : ''),
      ]),
    ),
    table(['outcome', 'answers'], outcomeRows),
  ];
  if (r.settlement) lines.push(keyValueTable(settlementRows(r.settlement)));
  if (r.reconciliation) lines.push(keyValueTable(reconciliationRows(r.reconciliation)));
  lines.push(
    table(
      ['money check', 'result', ''],
      r.checks.map((c) => [c.what, c.ok ? pc.green('OK') : pc.red('FAILED'), c.detail]),
    ),
    `money: claimed ${yuan(s.amountClaimedCents)} + remaining ${yuan(s.amountRemainingCents)} = ${yuan(s.amountClaimedCents + s.amountRemainingCents)}, total ${yuan(r.totalCents)}: ${json.ok ? 'OK to the cent' : 'MISMATCH'}`,
    `finished in ${r.seconds.toFixed(1)} s; campaign closed, ${r.services.length} service(s) stopped`,
  );
  return { json, human: lines.join('\n') };
}

export function demoCommand(env: CliEnv): Command {
  return examples(
    new Command('demo')
      .description(
        'the main job (npm start): migrations, services, a gala campaign with a crowd, and the money check to the cent',
      )
      .option('--packets <n>', 'packets in the campaign', asInt('--packets', 1), Number(env.DEMO_PACKETS ?? 10_000))
      .option('--total <yuan>', 'campaign total in yuan', env.DEMO_TOTAL_YUAN ?? '10000')
      .option('--users <n>', 'users in the crowd', asInt('--users', 1, 1_000_000), Number(env.DEMO_USERS ?? 50_000))
      .option('--batches <n>', 'release batches', asInt('--batches', 1, 100), 3)
      .option('--interval <duration>', 'time between batches', asDuration('--interval'), 2000)
      .option('-c, --concurrency <n>', 'grabs in flight', asInt('-c', 1, 10_000), 200)
      .option('--connections <n>', 'HTTP/2 connections to grab-svc', asInt('--connections', 1, 64), 4)
      .option('--no-account', 'do not start account-svc even if it is built')
      .option('--no-gift', 'do not start gift-svc even if it is built')
      .option(
        '--delivery-timeout <duration>',
        'how long to wait for gift-svc',
        asDuration('--delivery-timeout'),
        90_000,
      )
      .option('--keep', "keep the demo campaign's Redis keys afterwards")
      .action(action((ctx, o: DemoOptions) => demo(ctx, o, env))),
    [
      'npm start',
      'npm start -- --packets 500 --users 2000',
      'redpacket demo --users 100000 --packets 20000 --json > report.json',
    ],
  );
}

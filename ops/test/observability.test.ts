/**
 * ops/: the Prometheus config checked against a schema of the fields it uses (promtool is not
 * installed), the Grafana provisioning against the dashboard, and the dashboard against the real
 * services: every PromQL expression parses (Prometheus's own grammar, @prometheus-io/lezer-promql)
 * and names only metrics that the four real mains, spawned and given real traffic, expose.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { credentials, Metadata, type Client, type ServiceError } from '@grpc/grpc-js';
import { depositBudget } from '@redpacket/ledger/testing';
import type { Pool } from '@redpacket/db';

import {
  bearer,
  call,
  parsePrometheusText,
  pollUntil,
  requireRedis,
  sampleSum,
  TEST_AMQP_URL,
  testSigner,
  TEST_MYSQL_URL,
  TEST_REDIS_URL,
  type Sample,
} from '@redpacket/lib/testing';
import { freePort, spawnNode, type Child } from '@redpacket/loadgen';
import { AccountServiceClient, AdminServiceClient, GrabServiceClient, Outcome, Split } from '@redpacket/proto';
import { parser } from '@prometheus-io/lezer-promql';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { z } from 'zod';
import { loadRateLimitService } from '../../gateway/src/rls-proto.js';
import { descriptorsFor, envoyDomain, grabHeaders } from '../../gateway/test/envoy-descriptors.js';
import { dropCampaign, dropTopology, requireMysql, requireTopology } from '../../gift-svc/test/harness.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const read = (path: string): string => readFileSync(join(root, path), 'utf8');

// ---------------------------------------------------------------------------------------------
// Prometheus config: the fields this file uses, strictly (a misspelt key fails like promtool would)

const Duration = z.string().regex(/^(\d+(ms|s|m|h|d|w|y))+$/, 'a Prometheus duration such as 5s or 1m30s');
const PrometheusConfig = z
  .object({
    global: z.object({ scrape_interval: Duration, scrape_timeout: Duration, evaluation_interval: Duration }).strict(),
    rule_files: z.array(z.string().regex(/^[\w.-]+\.yml$/)).optional(),
    scrape_configs: z
      .array(
        z
          .object({
            job_name: z.string().regex(/^[a-zA-Z_][a-zA-Z0-9_-]*$/),
            metrics_path: z.string().startsWith('/').optional(),
            dns_sd_configs: z
              .array(
                z
                  .object({
                    names: z.array(z.string().min(1)).min(1),
                    type: z.enum(['A', 'AAAA', 'SRV']),
                    port: z.number().int().min(1).max(65535),
                    refresh_interval: Duration.optional(),
                  })
                  .strict(),
              )
              .optional(),
            static_configs: z
              .array(z.object({ targets: z.array(z.string().regex(/^[\w.-]+:\d+$/)).min(1) }).strict())
              .optional(),
          })
          .strict()
          .refine((j) => (j.dns_sd_configs ? 1 : 0) + (j.static_configs ? 1 : 0) === 1, 'one kind of targets a job'),
      )
      .min(1),
  })
  .strict();

/** Alerting rules, the fields they use, strictly (what promtool check rules would refuse). */
const AlertRules = z
  .object({
    groups: z
      .array(
        z
          .object({
            name: z.string().min(1),
            rules: z
              .array(
                z
                  .object({
                    alert: z.string().regex(/^[A-Za-z][A-Za-z0-9]*$/),
                    expr: z.string().min(1),
                    for: Duration.optional(),
                    labels: z.object({ severity: z.enum(['page', 'ticket']) }).strict(),
                    annotations: z.object({ summary: z.string().min(1), description: z.string().min(1) }).strict(),
                  })
                  .strict(),
              )
              .min(1),
          })
          .strict(),
      )
      .min(1),
  })
  .strict();
const alertRules = (): z.infer<typeof AlertRules> => AlertRules.parse(parse(read('ops/prometheus/alerts.yml')));
/** Metrics the alerts name that no service of ours exposes: Prometheus's own and Envoy's (admin /stats/prometheus). */
const FOREIGN_METRICS = new Set(['up', 'envoy_http_downstream_rq_xx', 'envoy_http_downstream_rq_total']);

const toMs = (d: string): number =>
  [...d.matchAll(/(\d+)(ms|s|m|h|d|w|y)/g)].reduce(
    (a, [, n, u]) =>
      a + Number(n) * { ms: 1, s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7, w: 6.048e8, y: 3.1536e10 }[u as 'ms'],
    0,
  );

// ---------------------------------------------------------------------------------------------
// Grafana: provisioning files and the dashboard

const Datasources = z
  .object({
    apiVersion: z.literal(1),
    datasources: z.array(
      z
        .object({
          name: z.string(),
          uid: z.string(),
          type: z.literal('prometheus'),
          access: z.literal('proxy'),
          url: z.string().url(),
          isDefault: z.boolean(),
          editable: z.boolean(),
          jsonData: z.object({ timeInterval: Duration }).strict(),
        })
        .strict(),
    ),
  })
  .strict();

const DashboardProviders = z
  .object({
    apiVersion: z.literal(1),
    providers: z.array(
      z
        .object({
          name: z.string(),
          folder: z.string(),
          type: z.literal('file'),
          disableDeletion: z.boolean(),
          allowUiUpdates: z.boolean(),
          options: z.object({ path: z.string().startsWith('/'), foldersFromFilesStructure: z.boolean() }).strict(),
        })
        .strict(),
    ),
  })
  .strict();

interface Target {
  expr: string;
  refId: string;
  datasource: { type: string; uid: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: Target[];
  gridPos: { h: number; w: number; x: number; y: number };
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; datasource: { uid: string }; query: { query: string } }[] };
}

const dashboard = JSON.parse(read('ops/grafana/dashboards/redpacket.json')) as Dashboard;

/** Grafana's variables, replaced by what they stand for at query time, so Prometheus's grammar can parse. */
function substitute(expr: string): string {
  return expr
    .replaceAll('$__rate_interval', '1m')
    .replaceAll('$__range', '15m')
    .replaceAll('$__interval', '15s')
    .replace(/\$(\w+)/g, '.*');
}

/** The metric names an expression selects, from Prometheus's grammar; throws where it does not parse. */
function metricNames(expr: string): string[] {
  const text = substitute(expr);
  const tree = parser.parse(text);
  const names: string[] = [];
  tree.iterate({
    enter(node) {
      if (node.type.isError) throw new Error(`PromQL does not parse at ${node.from}: ${text}`);
      if (node.name === 'Identifier' && node.node.parent?.name === 'VectorSelector') {
        names.push(text.slice(node.from, node.to));
      }
    },
  });
  return names;
}

/** Every expression of the dashboard, with where it is. */
function expressions(): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  for (const p of dashboard.panels) {
    for (const t of p.targets ?? []) out.push({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr });
  }
  for (const v of dashboard.templating.list) {
    const m = /^label_values\((\w+),\s*(\w+)\)$/.exec(v.query.query);
    if (!m) throw new Error(`variable ${v.name}: not a label_values(metric, label) query: ${v.query.query}`);
    out.push({ where: `variable ${v.name}`, expr: m[1] as string });
  }
  return out;
}

describe('ops/prometheus/prometheus.yml', () => {
  it('uses only known fields, with valid durations, and scrapes each service as its own job', () => {
    const cfg = PrometheusConfig.parse(parse(read('ops/prometheus/prometheus.yml')));
    expect(toMs(cfg.global.scrape_timeout)).toBeLessThan(toMs(cfg.global.scrape_interval));
    const jobs = cfg.scrape_configs.map((j) => j.job_name);
    expect(new Set(jobs).size).toBe(jobs.length);
    expect(jobs).toEqual(expect.arrayContaining(['grab-svc', 'account-svc', 'gift-svc', 'gateway']));
    // the schema can fail: a misspelt key and a bad duration are refused
    const bad = parse(read('ops/prometheus/prometheus.yml')) as { global: Record<string, unknown> };
    bad.global['scrape_intervall'] = '5s';
    expect(PrometheusConfig.safeParse(bad).success).toBe(false);
    delete bad.global['scrape_intervall'];
    bad.global['scrape_interval'] = '5 seconds';
    expect(PrometheusConfig.safeParse(bad).success).toBe(false);
  });
});

describe('ops/prometheus/alerts.yml', () => {
  it('is loaded by prometheus.yml and mounted, uses only known fields, and every expression parses', () => {
    const cfg = PrometheusConfig.parse(parse(read('ops/prometheus/prometheus.yml')));
    expect(cfg.rule_files).toEqual(['alerts.yml']);
    expect(read('docker-compose.yml')).toContain('./ops/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro');
    const rules = alertRules().groups.flatMap((g) => g.rules);
    expect(rules.map((r) => r.alert)).toEqual(
      expect.arrayContaining([
        'RedpacketDeliveryBacklogGrowing',
        'RedpacketDeadLetters',
        'RedpacketOutboxLag',
        'RedpacketServiceNotServing',
        'RedpacketEdge5xx',
      ]),
    );
    for (const r of rules) expect(metricNames(r.expr).length, r.alert).toBeGreaterThan(0);
    // and the checks can fail: a misspelt field, a bad duration, an expression that does not parse
    const bad = parse(read('ops/prometheus/alerts.yml')) as { groups: { rules: Record<string, unknown>[] }[] };
    const first = bad.groups[0]!.rules[0]!;
    first['fro'] = '5m';
    expect(AlertRules.safeParse(bad).success).toBe(false);
    delete first['fro'];
    first['for'] = 'five minutes';
    expect(AlertRules.safeParse(bad).success).toBe(false);
    expect(() => metricNames('sum(rate(redpacket_gift_dead_lettered_total[1h])) >')).toThrow(/does not parse/);
  });
});

describe('ops/grafana', () => {
  it('provisions the datasource every panel uses, and the folder the dashboards are mounted in', () => {
    const ds = Datasources.parse(parse(read('ops/grafana/provisioning/datasources/prometheus.yml')));
    const providers = DashboardProviders.parse(parse(read('ops/grafana/provisioning/dashboards/redpacket.yml')));
    expect(providers.providers.map((p) => p.options.path)).toEqual(['/var/lib/grafana/dashboards']);
    const uid = ds.datasources[0]?.uid;
    expect(new URL(String(ds.datasources[0]?.url)).host).toBe('prometheus:9090');
    expect(dashboard.uid).toMatch(/^[a-z0-9-]{1,40}$/);
    for (const p of dashboard.panels.filter((x) => x.type !== 'row')) {
      expect(p.datasource?.uid, p.title).toBe(uid);
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets ?? []) expect(t.datasource.uid, `${p.title} ${t.refId}`).toBe(uid);
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
    }
    for (const v of dashboard.templating.list) expect(v.datasource.uid).toBe(uid);
    expect(new Set(dashboard.panels.map((p) => p.id)).size).toBe(dashboard.panels.length);
  });

  it("every expression parses with Prometheus's grammar and selects at least one metric", () => {
    const all = expressions();
    expect(all.length).toBeGreaterThan(20);
    for (const { where, expr } of all) expect(metricNames(expr).length, where).toBeGreaterThan(0);
    // the check can fail: a broken expression, and a name taken from a label matcher, are told apart
    expect(() => metricNames('sum(rate(redpacket_rpc_total[1m])')).toThrow(/does not parse/);
    expect(metricNames('sum by (op) (rate(a_total{op="b_total"}[1m])) / on() group_left max(c)')).toEqual([
      'a_total',
      'c',
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// The real services

type RlsClient = Client & {
  ShouldRateLimit: (
    req: object,
    md: Metadata,
    opts: object,
    cb: (e: ServiceError | null, r: { overall_code: string }) => void,
  ) => void;
};

/** Metric names a /metrics text declares (# TYPE), histograms with their series, and those with samples. */
function exposed(text: string): { declared: Set<string>; samples: Sample[] } {
  const declared = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [name, type] = [m[1] as string, m[2] as string];
    declared.add(name);
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) declared.add(name + s);
    if (type === 'summary') for (const s of ['_sum', '_count']) declared.add(name + s);
  }
  return { declared, samples: parsePrometheusText(text) };
}

describe('the dashboard against the four real services', () => {
  const children: Child[] = [];
  let pool: Pool;
  let redis: Redis;
  const run = randomBytes(4).toString('hex');
  let topology: Awaited<ReturnType<typeof requireTopology>>;
  const campaigns: string[] = [];
  const metricsPorts: Record<string, number> = {};
  const grpcPorts: Record<string, number> = {};

  /**
   * account-svc resyncs the whole eligibility mirror of its Redis database at start (and drops
   * users MySQL does not know): it gets a database apart from the one the other tests share.
   */
  const accountRedisUrl = (): string => {
    const u = new URL(TEST_REDIS_URL);
    u.pathname = `/${(Number(u.pathname.slice(1)) || 0) + 1}`;
    return u.toString();
  };

  beforeAll(async () => {
    pool = await requireMysql(2);
    redis = await requireRedis();
    topology = await requireTopology();
    const suffix = topology.queue.slice(topology.queue.lastIndexOf('.test-') + 1);
    const common = {
      ...testSigner().env,
      MYSQL_URL: TEST_MYSQL_URL,
      AMQP_URL: TEST_AMQP_URL,
      LOG_LEVEL: 'info',
      // The shared test Redis keeps nothing on disk: grab-svc's best effort, opted into explicitly.
      REDIS_DURABILITY: 'none',
    };
    const start = async (name: string, main: string, env: Record<string, string>): Promise<void> => {
      grpcPorts[name] = await freePort();
      metricsPorts[name] = await freePort();
      const child = spawnNode(join(root, main), [], {
        ...common,
        REDIS_URL: TEST_REDIS_URL,
        GRPC_PORT: String(grpcPorts[name]),
        METRICS_PORT: String(metricsPorts[name]),
        ...env,
      });
      children.push(child);
      await child.waitFor(/gRPC server listening/, 30_000);
    };
    await Promise.all([
      start('grab-svc', 'grab-svc/dist/main.js', {
        // its relay only moves the campaigns this test creates, to this test's queue
        RELAY_SCOPE: 'created-here',
        WINS_TOPOLOGY_SUFFIX: suffix,
        RELAY_CONNECTION_NAME: `obs-relay-${run}`,
        SETTLE_EVERY_MS: '0',
      }),
      start('gift-svc', 'gift-svc/dist/main.js', {
        WINS_TOPOLOGY_SUFFIX: suffix,
        AMQP_CONNECTION_NAME: `obs-gift-${run}`,
      }),
      start('gateway', 'gateway/dist/main.js', {}),
      start('account-svc', 'account-svc/dist/src/main.js', {
        REDIS_URL: accountRedisUrl(),
        JWKS_PORT: 'off',
        PASSWORD_HASH_COST: '4',
      }),
    ]);
  });

  afterAll(async () => {
    await Promise.all(children.map((c) => c.stop()));
    for (const id of campaigns) await dropCampaign(redis, pool, id);
    await pool.query('DELETE FROM users WHERE user_id LIKE ?', [`obs${run}-%`]);
    if (topology) await dropTopology(topology);
    redis?.disconnect();
    await pool?.end();
  });

  const scrape = async (name: string): Promise<ReturnType<typeof exposed>> => {
    const res = await fetch(`http://127.0.0.1:${metricsPorts[name]}/metrics`);
    expect(res.status).toBe(200);
    return exposed(await res.text());
  };

  it('real traffic moves the new counters, and the dashboard names only metrics they expose', async () => {
    const adminMd = bearer(await testSigner().sign({ userId: `obs${run}-ops`, role: 'admin' }));

    // grabs: five winners, each win relayed to RabbitMQ and credited by gift-svc
    const grabAddr = `127.0.0.1:${grpcPorts['grab-svc']}`;
    const admin = new AdminServiceClient(grabAddr, credentials.createInsecure());
    const grab = new GrabServiceClient(grabAddr, credentials.createInsecure());
    await depositBudget(pool, `obs${run}-owner`, 1000);
    const c = await call(
      admin.createCampaign,
      admin,
      {
        name: 'observability',
        totalCents: 1000n,
        packetCount: 5,
        split: Split.EQUAL,
        batches: 1,
        batchIntervalMs: 0n,
        startsAt: undefined,
        expiresAt: new Date(Date.now() + 600_000),
        ownerId: `obs${run}-owner`,
        eligibility: undefined,
      },
      adminMd,
    );
    campaigns.push(c.campaignId);
    const outcomes = [];
    for (let i = 0; i < 6; i++) {
      const md = bearer(await testSigner().sign({ userId: `obs${run}-u${i}` }));
      outcomes.push((await call(grab.grab, grab, { campaignId: c.campaignId, requestId: '' }, md)).outcome);
    }
    expect(outcomes.filter((o) => o === Outcome.WON)).toHaveLength(5);
    expect(outcomes.at(-1)).toBe(Outcome.SOLD_OUT);
    admin.close();
    grab.close();

    // gateway: what Envoy asks for a grab, from two users
    const Rls = loadRateLimitService({ defaults: true });
    const rls = new Rls(`127.0.0.1:${grpcPorts['gateway']}`, credentials.createInsecure()) as unknown as RlsClient;
    for (const u of ['a', 'b']) {
      const req = { domain: envoyDomain(), descriptors: descriptorsFor('grab', { headers: grabHeaders('obs', u) }) };
      await new Promise((resolve, reject) =>
        rls.ShouldRateLimit(req, new Metadata(), {}, (e, r) => (e ? reject(e) : resolve(r))),
      );
    }
    rls.close();

    // account-svc: one user registered and read back
    const accounts = new AccountServiceClient(`127.0.0.1:${grpcPorts['account-svc']}`, credentials.createInsecure());
    const userId = `obs${run}-acct`;
    const user = { userId, displayName: 'obs', password: '', riskScore: 0, role: '' };
    await call(accounts.registerUser, accounts, { user }, adminMd);
    await call(accounts.getAccount, accounts, { userId }, adminMd);
    accounts.close();

    const gift = await pollUntil(
      'gift-svc to credit the five wins',
      async () => {
        const m = await scrape('gift-svc');
        return sampleSum(m.samples, 'redpacket_gift_delivered_total') === 5 && m;
      },
      20_000,
      100,
    );
    const grabSvc = await scrape('grab-svc');
    const gateway = await scrape('gateway');
    const account = await scrape('account-svc');

    const won = { campaign: c.campaignId, outcome: 'won' };
    expect(sampleSum(grabSvc.samples, 'redpacket_grab_outcomes_total', won)).toBe(5);
    expect(sampleSum(grabSvc.samples, 'redpacket_grab_outcomes_total', { campaign: c.campaignId })).toBe(6);
    expect(sampleSum(grabSvc.samples, 'redpacket_relay_published_total')).toBe(5);
    expect(sampleSum(grabSvc.samples, 'redpacket_relay_lag_seconds_count')).toBe(5);
    expect(sampleSum(grabSvc.samples, 'redpacket_outbox_length', { campaign: c.campaignId })).toBe(0);
    const script = { dependency: 'redis', op: 'grab_script' };
    expect(sampleSum(grabSvc.samples, 'redpacket_dependency_duration_seconds_count', script)).toBe(6);
    expect(sampleSum(gift.samples, 'redpacket_gift_received_total')).toBe(5);
    expect(sampleSum(gateway.samples, 'redpacket_ratelimit_decisions_total')).toBeGreaterThanOrEqual(2);
    expect(sampleSum(gateway.samples, 'redpacket_rpc_total', { code: 'OK' })).toBe(2);
    const tx = { dependency: 'mysql', op: 'account_transaction' };
    // at least RegisterUser's (a resync after a Redis reconnect would add its own)
    expect(sampleSum(account.samples, 'redpacket_dependency_duration_seconds_count', tx)).toBeGreaterThanOrEqual(1);

    const names = new Set([grabSvc, gift, gateway, account].flatMap((m) => [...m.declared]));
    const missing = expressions().flatMap(({ where, expr }) =>
      metricNames(expr)
        .filter((n) => !names.has(n))
        .map((n) => `${where}: ${n}`),
    );
    expect(missing).toEqual([]);
    // the alerts too, but for Prometheus's and Envoy's own metrics
    const alertMissing = alertRules()
      .groups.flatMap((g) => g.rules)
      .flatMap((r) =>
        metricNames(r.expr)
          .filter((n) => !names.has(n) && !FOREIGN_METRICS.has(n))
          .map((n) => `alert ${r.alert}: ${n}`),
      );
    expect(alertMissing).toEqual([]);
    // and the check can fail: a name no service exposes is caught
    expect(names.has('redpacket_grab_outcome_total')).toBe(false);
  });
});

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TEST_AMQP_URL, testSigner, TEST_MYSQL_URL, TEST_REDIS_URL } from '@redpacket/lib/testing';
import { echoServerScript, freePort, spawnNode, type Child } from '@redpacket/loadgen';
import { GetAccountRequest, GetCampaignRequest, ListMyAwardsRequest } from '@redpacket/proto';
import type { Topology } from '@redpacket/wins';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { depositBudget } from '@redpacket/ledger/testing';
import { dropTopology, requireMysql, requireTopology } from '../../gift-svc/test/harness.js';
import type { GhzReport } from '../src/bench/report.js';
import { cli, cliJson, startGrabSvc, type GrabServer } from './helpers.js';

type GhzJson = GhzReport;

let echo: Child;
let echoAddr: string;
let g: GrabServer;
beforeAll(async () => {
  const port = await freePort();
  echo = spawnNode(echoServerScript, [String(port)]);
  await echo.waitFor(/^listening/);
  echoAddr = `127.0.0.1:${port}`;
  g = await startGrabSvc();
  // campaigns are funded: the CLI creates them for owner ops, whose budget is deposited first
  const pool = await requireMysql();
  await depositBudget(pool, 'ops', 100_000_000);
  await pool.end();
});
afterAll(async () => {
  await echo?.stop();
  await g?.stop();
});

describe('redpacket bench', () => {
  it("prints ghz's JSON report: count = -n, nanosecond durations, distributions", async () => {
    const r = await cliJson<GhzJson>([
      'bench',
      echoAddr,
      '--call',
      'bench.Echo.Echo',
      '-n',
      '300',
      '-c',
      '10',
      '-d',
      'call {{.RequestNumber}} {{randomString 8}}',
      '-O',
      'json',
    ]);
    expect(r.count).toBe(300);
    expect(r.endReason).toBe('normal');
    expect(r.statusCodeDistribution).toEqual({ OK: 300 });
    expect(r.errorDistribution).toEqual({});
    expect(r.fastest).toBeGreaterThan(0);
    expect(r.fastest).toBeLessThanOrEqual(r.average);
    expect(r.average).toBeLessThanOrEqual(r.slowest);
    // nanoseconds: a local call takes more than 10 µs and less than 10 s
    expect(r.fastest).toBeGreaterThan(10_000);
    expect(r.slowest).toBeLessThan(10e9);
    expect(r.latencyDistribution.map((l) => l.percentage)).toEqual([10, 25, 50, 75, 90, 95, 99]);
    const lats = r.latencyDistribution.map((l) => l.latency);
    expect([...lats].sort((a, b) => a - b)).toEqual(lats);
    expect(r.histogram).toHaveLength(11);
    expect(r.histogram.reduce((s, b) => s + b.count, 0)).toBe(300);
    expect(r.rps).toBeGreaterThan(0);
  });

  it('gives each call its own user token and templated data, and grab-svc counts one win per user', async () => {
    const c = await cliJson<{ campaignId: string }>(
      ['campaign', 'create', '--name', 'bench', '--total', '10', '--packets', '40'],
      g.env,
    );
    g.track(c.campaignId);
    const r = await cliJson<GhzJson>(
      [
        'bench',
        '--call',
        'redpacket.v1.GrabService.Grab',
        '-n',
        '50',
        '-c',
        '8',
        '--token-per-user',
        '50',
        // a templated -m without authorization: each call still gets its user's token added
        '-m',
        '{"x-trace":"t{{.RequestNumber}}-{{randomString 4}}"}',
        '-d',
        `{"campaign_id":"${c.campaignId}","request_id":"r{{.RequestNumber}}"}`,
      ],
      g.env,
    );
    expect(r.count).toBe(50);
    expect(r.statusCodeDistribution).toEqual({ OK: 50 });
    const shown = await cliJson<{ stats: Record<string, unknown> }>(['campaign', 'show', c.campaignId], g.env);
    expect(shown.stats).toMatchObject({
      packetsClaimed: 40,
      wonCount: '40',
      soldOutCount: '10',
      alreadyGrabbedCount: '0',
    });
  });

  it('reports errors the way ghz does, and --baseline adds the echo ceiling', async () => {
    const r = await cliJson<GhzJson>(
      [
        'bench',
        '--call',
        'redpacket.v1.GrabService.GetCampaign',
        '-n',
        '40',
        '-c',
        '4',
        '--admin',
        '-d',
        '{"campaign_id":"noSuchOne"}',
        '--baseline',
      ],
      g.env,
    );
    expect(r.count).toBe(40);
    expect(r.statusCodeDistribution).toEqual({ NotFound: 40 });
    expect(r.errorDistribution).toEqual({ 'rpc error: code = NotFound desc = campaign noSuchOne not found': 40 });
    expect(r.baseline!.rps).toBeGreaterThan(0);
    expect(r.baseline!.targetOverEcho).toBeCloseTo(r.rps / r.baseline!.rps, 6);
    // scripts/setup.sh installs h2load (nghttp2-client): the native client's figure is there too
    expect(r.baseline!.h2loadError).toBeUndefined();
    expect(r.baseline!.h2loadRps).toBeGreaterThan(0);

    const human = await cli(
      [
        'bench',
        '--call',
        'redpacket.v1.GrabService.GetCampaign',
        '-n',
        '20',
        '--admin',
        '-d',
        '{"campaign_id":"noSuchOne"}',
        '--baseline',
      ],
      g.env,
    );
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('[NotFound] 20 responses');
    expect(human.stdout).toMatch(
      /Ceiling: the same load against a bare grpc-js echo server ran at \d+ req\/s \(h2load, a native client, drove the same echo server at \d+ req\/s/,
    );
  });

  it('uses JSON arrays of call data and of metadata round-robin, as ghz does', async () => {
    const c = await cliJson<{ campaignId: string }>(
      ['campaign', 'create', '--name', 'rr', '--total', '1', '--packets', '1'],
      g.env,
    );
    g.track(c.campaignId);
    const user = (await cli(['token', 'rr-user'])).stdout.trim();
    // data alternates existing/unknown campaign; metadata alternates with/without a token
    const r = await cliJson<GhzJson>(
      [
        'bench',
        '--call',
        'redpacket.v1.GrabService/GetCampaign',
        '-n',
        '40',
        '-c',
        '1',
        '--cpus',
        '1',
        '-d',
        `[{"campaign_id":"${c.campaignId}"},{"campaign_id":"${c.campaignId}"},{"campaign_id":"unknownOne"},{"campaign_id":"unknownOne"}]`,
        '-m',
        `[{"authorization":"Bearer ${user}"},{}]`,
      ],
      g.env,
    );
    expect(r.count).toBe(40);
    expect(r.statusCodeDistribution).toEqual({ OK: 10, Unauthenticated: 20, NotFound: 10 });
  });

  it('refuses unknown methods, unknown fields and bad JSON before sending anything', async () => {
    const unknown = await cli(['bench', '--call', 'redpacket.v1.GrabService.Nope', '-n', '1'], g.env);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('no such unary method');
    const field = await cli(
      ['bench', '--call', 'redpacket.v1.GrabService.Grab', '-n', '1', '-d', '{"campaignid":"x"}'],
      g.env,
    );
    expect(field.code).toBe(2);
    expect(field.stderr).toContain('GrabRequest has no field "campaignid" (fields: campaign_id, request_id)');
    const json = await cli(
      ['bench', '--call', 'redpacket.v1.GrabService.Grab', '-n', '1', '-d', '{"campaign_id":'],
      g.env,
    );
    expect(json.code).toBe(2);
    expect(json.stderr).toContain('not valid JSON');
  });
});

const repo = (p: string): URL => new URL(`../../${p}`, import.meta.url);

/** What `envsubst < bench/<file>` gives: every ${NAME} replaced, none left over. */
function envsubst(file: string, vars: Record<string, string>): string {
  return readFileSync(repo(`bench/${file}`), 'utf8').replace(/\$\{(\w+)\}/g, (_, name: string) => {
    const v = vars[name];
    if (v === undefined) throw new Error(`bench/${file} uses \${${name}}, which the test does not set`);
    return v;
  });
}

describe('the ghz configs in bench/, run by redpacket bench --config', () => {
  let dir: string;
  let topology: Topology;
  let gift: Child;
  let giftAddr: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ghz-configs-'));
    topology = await requireTopology();
    const port = await freePort();
    gift = spawnNode(repo('gift-svc/dist/main.js'), [], {
      GRPC_PORT: String(port),
      ...testSigner().env,
      REDIS_URL: TEST_REDIS_URL,
      MYSQL_URL: TEST_MYSQL_URL,
      AMQP_URL: TEST_AMQP_URL,
      // its consumer reads a queue of its own, never the wins of other tests
      WINS_TOPOLOGY_SUFFIX: topology.queue.slice(topology.queue.lastIndexOf('.test-') + 1),
      AMQP_CONNECTION_NAME: `bench-configs-${topology.queue}`,
      LOG_LEVEL: 'info',
    });
    await gift.waitFor(/gRPC server listening/, 30_000);
    giftAddr = `127.0.0.1:${port}`;
  });
  afterAll(async () => {
    await gift?.stop();
    if (topology) await dropTopology(topology);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The README's steps: a campaign, a tokens file of `users` users, the config rendered. */
  async function prepare(
    file: string,
    users: number,
    packets: number,
  ): Promise<{ config: string; campaignId: string }> {
    const c = await cliJson<{ campaignId: string }>(
      ['campaign', 'create', '--name', `ghz ${file}`, '--total', String(packets), '--packets', String(packets)],
      g.env,
    );
    g.track(c.campaignId);
    const prefix = `ghz-${c.campaignId}-`;
    const tokens = await cli(['token', prefix, '--count', String(users), '--ghz-metadata']);
    expect(tokens.code).toBe(0);
    const tokensFile = join(dir, `${file}.tokens.json`);
    writeFileSync(tokensFile, tokens.stdout);
    const config = join(dir, file);
    writeFileSync(config, envsubst(file, { CAMPAIGN_ID: c.campaignId, TOKENS_FILE: tokensFile }));
    return { config, campaignId: c.campaignId };
  }

  it('grab.json: each call its own user from the tokens file, so the packets are won and the rest sold out', async () => {
    const { config, campaignId } = await prepare('grab.json', 60, 40);
    // -n on the command line wins over the file's total; the rest is the file's
    const r = await cliJson<GhzJson>(['bench', g.address, '--config', config, '-n', '60']);
    expect(r.count).toBe(60);
    expect(r.statusCodeDistribution).toEqual({ OK: 60 });
    expect(r.options).toMatchObject({
      call: 'redpacket.v1.GrabService.Grab',
      host: g.address,
      concurrency: 200,
      connections: 4,
    });
    const shown = await cliJson<{ stats: Record<string, unknown> }>(['campaign', 'show', '--', campaignId], g.env);
    expect(shown.stats).toMatchObject({ wonCount: '40', soldOutCount: '20', alreadyGrabbedCount: '0' });
  });

  it('get-campaign.json: every call answered OK with any user token', async () => {
    const { config } = await prepare('get-campaign.json', 30, 5);
    const r = await cliJson<GhzJson>(['bench', g.address, '--config', config, '-n', '90']);
    expect(r.count).toBe(90);
    expect(r.statusCodeDistribution).toEqual({ OK: 90 });
    expect(r.options).toMatchObject({ call: 'redpacket.v1.GrabService.GetCampaign', concurrency: 100 });
  });

  it('my-awards.json: gift-svc answers every ListMyAwards', async () => {
    const { config } = await prepare('my-awards.json', 30, 5);
    const r = await cliJson<GhzJson>(['bench', giftAddr, '--config', config, '-n', '50']);
    expect(r.count).toBe(50);
    expect(r.statusCodeDistribution).toEqual({ OK: 50 });
    expect(r.options).toMatchObject({ call: 'redpacket.v1.GiftService.ListMyAwards', host: giftAddr });
  });

  it('a config without tokens is refused by grab-svc, counted as ghz does', async () => {
    const { config } = await prepare('get-campaign.json', 1, 1);
    const noTokens = join(dir, 'no-tokens.json');
    const { 'metadata-file': _dropped, ...rest } = JSON.parse(readFileSync(config, 'utf8')) as Record<string, unknown>;
    writeFileSync(noTokens, JSON.stringify({ ...rest, total: 12 }));
    const r = await cliJson<GhzJson>(['bench', g.address, '--config', noTokens]);
    expect(r.count).toBe(12);
    expect(r.statusCodeDistribution).toEqual({ Unauthenticated: 12 });
  });

  it('refuses a ghz key it cannot honour, and a config that is not JSON', async () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ call: 'bench.Echo.Echo', 'load-schedule': 'step' }));
    const r = await cli(['bench', echoAddr, '--config', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('ghz key "load-schedule" is not supported');
    writeFileSync(bad, '{"call":');
    const j = await cli(['bench', echoAddr, '--config', bad]);
    expect(j.code).toBe(2);
    expect(j.stderr).toContain(`--config ${bad}`);
  });
});

interface EnvoyRoute {
  name: string;
  /** Set on a route to a service (the TLS listener's); the plain listener's only redirect. */
  route?: { cluster: string };
  match: {
    path?: string;
    prefix?: string;
    safe_regex?: { regex: string };
    headers?: { name: string; string_match: { exact: string } }[];
  };
}

// No Envoy on this host: the edge file cannot be run here (bench/README.md has the command). What
// can be checked is that h2load would send only requests envoy.yaml routes to a service.
describe('bench/edge-reads.uris, the h2load input for the HTTP edge', () => {
  const envoy = parse(readFileSync(repo('envoy/envoy.yaml'), 'utf8')) as {
    static_resources: {
      listeners: {
        filter_chains: {
          filters: { typed_config: { route_config?: { virtual_hosts: { routes: EnvoyRoute[] }[] } } }[];
        }[];
      }[];
    };
  };
  const routes = envoy.static_resources.listeners
    .flatMap((l) => l.filter_chains.flatMap((c) => c.filters))
    .flatMap((f) => f.typed_config.route_config?.virtual_hosts ?? [])
    .flatMap((v) => v.routes)
    .filter((r) => r.route !== undefined);
  /** Envoy's first route matching a GET of this path (query string removed, as Envoy matches). */
  const routeOf = (path: string): EnvoyRoute | undefined =>
    routes.find((r) => {
      const m = r.match;
      const method = m.headers?.find((h) => h.name === ':method')?.string_match.exact;
      if (method !== undefined && method !== 'GET') return false;
      if (m.path !== undefined) return m.path === path;
      if (m.safe_regex) return new RegExp(m.safe_regex.regex).test(path);
      return m.prefix !== undefined && path.startsWith(m.prefix);
    });
  // the transcoder rejects unknown query parameters: each must be a field of the route's request
  const requestFields: Record<string, string[]> = {
    'get-campaign': Object.keys(GetCampaignRequest.fromPartial({})),
    'list-my-awards': Object.keys(ListMyAwardsRequest.fromPartial({})),
    'get-account': Object.keys(GetAccountRequest.fromPartial({})),
  };
  const camel = (k: string): string => k.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

  it('names only routes envoy.yaml sends to a service, on the edge port, with known query fields', () => {
    const uris = envsubst('edge-reads.uris', { CAMPAIGN_ID: 'Xy3kQ9' }).split('\n').filter(Boolean);
    expect(uris.length).toBeGreaterThanOrEqual(3);
    const named = uris.map((line) => {
      const u = new URL(line);
      // h2load takes scheme, host and port from the first URI: all must agree with Envoy's listener
      expect(`${u.protocol}//${u.host}`).toBe('https://127.0.0.1:8443');
      const route = routeOf(u.pathname);
      expect(route, u.pathname).toBeDefined();
      const fields = requestFields[route!.name];
      expect(fields, `no request type known for route ${route!.name}`).toBeDefined();
      for (const k of u.searchParams.keys()) expect(fields, `${u.pathname}?${k}`).toContain(camel(k));
      return route!.name;
    });
    expect(named).toEqual(['get-campaign', 'list-my-awards', 'get-account']);
    // and the check itself tells a route apart from the catch-all
    expect(routeOf('/v1/nope')).toBeUndefined();
    expect(routeOf('/v1/campaigns/a/b')).toBeUndefined();
  });
});

import { echoServerScript, freePort, spawnNode, type Child } from '@redpacket/loadgen';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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

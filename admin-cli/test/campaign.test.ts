import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeKeyPair } from '@redpacket/lib';
import { deleteKeys, pollUntil, testSigner } from '@redpacket/lib/testing';
import { freePort } from '@redpacket/loadgen';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { depositBudget } from '@redpacket/ledger/testing';
import { requireMysql } from '../../gift-svc/test/harness.js';
import { cli, cliJson, startCli, startGrabSvc, type GrabServer } from './helpers.js';

let g: GrabServer;
beforeAll(async () => {
  g = await startGrabSvc();
  // campaigns are funded: the owners these tests name get a budget first
  const pool = await requireMysql();
  for (const owner of ['ops', 'boss']) await depositBudget(pool, owner, 100_000_000);
  await pool.end();
});
afterAll(async () => {
  await g?.stop();
});

interface CampaignJson {
  campaignId: string;
  name: string;
  totalCents: string;
  packetCount: number;
  split: string;
  batches: number;
  batchIntervalMs: string;
  state: string;
  ownerId: string;
  closeReason: string;
  packetsClaimed: number;
}

const create = async (extra: string[] = []): Promise<CampaignJson> => {
  const c = await cliJson<CampaignJson>(
    ['campaign', 'create', '--name', 'cli test', '--total', '123.45', '--packets', '7', ...extra],
    g.env,
  );
  g.track(c.campaignId);
  return c;
};

describe('redpacket campaign', () => {
  it('create prints the new campaign, with yuan converted to exact cents', async () => {
    const c = await create(['--batches', '2', '--interval', '2s', '--split', 'equal', '--owner', 'boss']);
    expect(c).toMatchObject({
      name: 'cli test',
      totalCents: '12345',
      packetCount: 7,
      split: 'EQUAL',
      batches: 2,
      batchIntervalMs: '2000',
      state: 'CAMPAIGN_STATE_OPEN',
      ownerId: 'boss',
    });
    expect(await g.redis.hget(`rp:{${c.campaignId}}:meta`, 'total')).toBe('12345');
  });

  it('list, show and close agree with the server', async () => {
    const c = await create();
    const listed = await cliJson<{ campaigns: CampaignJson[] }>(['campaign', 'list', '--page-size', '500'], g.env);
    expect(listed.campaigns.find((x) => x.campaignId === c.campaignId)).toMatchObject({ name: 'cli test' });

    const shown = await cliJson<{ campaign: CampaignJson; stats: Record<string, unknown> }>(
      ['campaign', 'show', c.campaignId],
      g.env,
    );
    expect(shown.campaign.campaignId).toBe(c.campaignId);
    expect(shown.stats).toMatchObject({
      packetsTotal: 7,
      packetsClaimed: 0,
      packetsRemaining: 7,
      amountTotalCents: '12345',
      amountRemainingCents: '12345',
      wonCount: '0',
    });

    const closed = await cliJson<CampaignJson>(['campaign', 'close', c.campaignId, '--reason', 'test over'], g.env);
    expect(closed).toMatchObject({ state: 'CAMPAIGN_STATE_ENDED', closeReason: 'test over' });
    expect(await g.redis.hget(`rp:{${c.campaignId}}:meta`, 'closed')).toBe('1');

    const human = await cli(['campaign', 'show', c.campaignId], g.env);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('ENDED');
    expect(human.stdout).toContain('¥123.45');
  });

  it('watch prints one JSON line a refresh, with delivery n/a while gift-svc is absent', async () => {
    const c = await create();
    const giftPort = await freePort();
    const r = await cli(
      [
        '--json',
        '--gift-addr',
        `127.0.0.1:${giftPort}`,
        'campaign',
        'watch',
        c.campaignId,
        '--count',
        '2',
        '--interval',
        '200ms',
      ],
      g.env,
    );
    expect(r.code).toBe(0);
    const frames = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { stats: { packetsTotal: number }; delivery: unknown; deliveryError: string });
    expect(frames).toHaveLength(2);
    expect(frames[1]!.stats.packetsTotal).toBe(7);
    expect(frames[1]!.delivery).toBeNull();
    expect(frames[1]!.deliveryError).toContain('gift-svc is not reachable');

    const human = await cli(
      ['--gift-addr', `127.0.0.1:${giftPort}`, 'campaign', 'watch', c.campaignId, '--count', '1'],
      g.env,
    );
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/delivered\s+│ n\/a/);
  });

  it('watch leaves cleanly on Ctrl-C', async () => {
    const c = await create();
    // gift-svc pointed at a closed port: the default one may be another engineer's server
    const giftAddr = `127.0.0.1:${await freePort()}`;
    const p = startCli(['--gift-addr', giftAddr, 'campaign', 'watch', c.campaignId, '--interval', '200ms'], g.env);
    await pollUntil('a first frame', () => p.out.stdout.includes(c.campaignId), 15_000).catch((err: Error) => {
      throw new Error(`${err.message}\nstdout: ${p.out.stdout}\nstderr: ${p.out.stderr}`);
    });
    p.kill('SIGINT');
    const code = await pollUntil('watch to exit', () => p.exitCode ?? undefined, 5_000);
    expect(code).toBe(0);
    expect(p.out.stderr).toContain('stopped watching');
  });

  it('restore rebuilds a campaign whose Redis state is gone, and refuses one that still has it', async () => {
    const c = await create();
    const refused = await cli(['campaign', 'restore', c.campaignId], g.env);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('still has Redis state');
    await deleteKeys(g.redis, `rp:{${c.campaignId}}:*`);
    // the machine's shared wins queue may hold other tests' messages: not this test's concern
    const r = await cliJson<{ campaignId: string; claimsRestored: number; packetsRemaining: number; notes: string[] }>(
      ['campaign', 'restore', c.campaignId, '--allow-queued'],
      g.env,
    );
    expect(r).toMatchObject({ campaignId: c.campaignId, claimsRestored: 0, packetsRemaining: 7 });
    expect(r.notes.length).toBeGreaterThan(0);
    expect(await g.redis.hget(`rp:{${c.campaignId}}:meta`, 'total')).toBe('12345');
    await deleteKeys(g.redis, `rp:{${c.campaignId}}:*`);
    const table = await cli(['campaign', 'restore', c.campaignId, '--allow-queued'], g.env);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain(`restored campaign ${c.campaignId} from MySQL`);
    expect(table.stdout).toMatch(/packets put back\s+│ 7, ¥123\.45/);
  });

  it('exits 4 with a clear message for an unknown campaign, for show, close, settle and reconcile', async () => {
    for (const sub of ['show', 'close', 'settle', 'reconcile', 'watch']) {
      const r = await cli(['campaign', sub, 'noSuchCampaign1'], g.env);
      expect(r.code, sub).toBe(4);
      expect(r.stderr, sub).toContain('campaign noSuchCampaign1 not found');
      expect(r.stdout, sub).toBe('');
    }
  });

  it('exits 3 when grab-svc is down', async () => {
    const port = await freePort();
    const r = await cli(['campaign', 'list'], { GRAB_ADDR: `127.0.0.1:${port}` });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`grab-svc is not reachable at 127.0.0.1:${port}`);
  });

  it('exits 5 without an admin token: a user token, or a token signed with a key not in the JWKS', async () => {
    const user = await testSigner().sign({ userId: 'just-a-user' });
    const denied = await cli(['campaign', 'list'], { ...g.env, REDPACKET_TOKEN: user });
    expect(denied.code).toBe(5);
    expect(denied.stderr).toContain('not allowed');

    const other = writeKeyPair(mkdtempSync(join(tmpdir(), 'cli-other-key-')));
    const forged = await cli(['--private-key', other.privateKeyFile, 'campaign', 'list'], g.env);
    expect(forged.code).toBe(5);
    expect(forged.stderr).toContain('not authenticated');
  });

  it('exits 2 on bad usage and on requests the server refuses, and --help shows examples', async () => {
    const bad = await cli(['campaign', 'create', '--name', 'x', '--total', '1.234', '--packets', '3'], g.env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('at most 2 decimals');

    const refused = await cli(['campaign', 'create', '--name', 'x', '--total-cents', '2', '--packets', '3'], g.env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('invalid request: packet_count');

    const unknown = await cli(['campaign', 'frobnicate'], g.env);
    expect(unknown.code).toBe(2);

    const help = await cli(['campaign', 'create', '--help'], g.env);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Examples:');
    expect(help.stdout).toContain('redpacket campaign create --name');
  });
});

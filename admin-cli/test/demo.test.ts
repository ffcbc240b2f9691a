import { keys } from '@redpacket/lib';
import { deleteKeys, requireRedis, TEST_REDIS_URL } from '@redpacket/lib/testing';
import { privateDatabase, type PrivateDatabase } from '@redpacket/ledger/testing';
import type { RowDataPacket } from 'mysql2/promise';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '@redpacket/loadgen';
import { cli, gone, pollUntil, startCli } from './helpers.js';

interface DemoReport {
  ok: boolean;
  campaignId: string;
  services: { name: string; port: number; pid: number }[];
  calls: number;
  outcomes: Record<string, number>;
  money: { totalCents: string; claimedCents: string; remainingCents: string; winners: number; wonAnswersCents: string };
  stats: { packetsClaimed: number; packetsTotal: number; state: string };
  checks: { what: string; ok: boolean; detail: string }[];
  settlement: { amountAwardedCents: string; refundCents: string } | null;
  moneyTrail: {
    depositCents: string;
    escrowCents: string;
    awardsCents: string | null;
    refundCents: string | null;
    spentCents: string;
    withdrawals: { userId: string; awardCents: string; amountCents: string; balanceAfterCents: string }[];
    audit: { consistent: boolean; accountsChecked: number; transfersChecked: number; problems: string[] } | null;
  } | null;
  waves: { name: string; calls: number }[];
  durability: string;
}

// The demo runs the mesh's relay, which reads every campaign's outbox in its Redis database:
// a database of its own keeps it away from the other tests' campaigns.
const DEMO_REDIS_URL = `${TEST_REDIS_URL.replace(/\/\d*$/, '')}/1`;
// That Redis keeps nothing on disk: grab-svc's best effort, opted into explicitly.
const DEMO_ENV = { REDIS_URL: DEMO_REDIS_URL, REDIS_DURABILITY: 'none' };

let redis: Redis;
// A MySQL database of the demo's own: the audit in its report sees only the demo's money.
let db: PrivateDatabase;
const campaigns: string[] = [];
beforeAll(async () => {
  redis = await requireRedis(DEMO_REDIS_URL);
  db = await privateDatabase(2);
});
afterAll(async () => {
  await db?.drop();
  for (const id of campaigns) {
    await deleteKeys(redis, `rp:{${id}}:*`);
    await redis.zrem(keys.campaigns, id);
  }
  await redis?.quit();
});

describe('redpacket demo (the main job) at a small size', () => {
  it('runs a whole campaign on the shipped durable Redis, checks the money to the cent and stops what it started', async () => {
    // No REDIS_URL: as `npm start` runs it, on a redis-server of its own with AOF (appendfsync
    // always) under grab-svc's default policy.
    const r = await cli(
      ['--json', 'demo', '--packets', '500', '--total', '888.88', '--users', '2000', '--interval', '1s', '-c', '50'],
      { MYSQL_URL: db.url },
      120_000,
    );
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as DemoReport;
    campaigns.push(report.campaignId);
    expect(report.ok).toBe(true);
    expect(report.checks.map((c) => c.what)).toEqual(
      expect.arrayContaining([
        'claimed + remaining = total (GetCampaignStats)',
        "users' own WON answers = claimed",
        'one packet per user, no packet twice, retries answered the same',
        'outcome counters = the answers the crowd got',
      ]),
    );
    expect(report.checks.every((c) => c.ok)).toBe(true);

    // the money line: claimed + remaining = total, and the users' own WON answers add up to claimed
    const m = report.money;
    expect(m.totalCents).toBe('88888');
    expect(BigInt(m.claimedCents) + BigInt(m.remainingCents)).toBe(88888n);
    expect(m.wonAnswersCents).toBe(m.claimedCents);
    // 2,000 users for 500 packets: every packet goes, one per winner
    expect(report.stats.packetsClaimed).toBe(500);
    expect(m.winners).toBe(500);
    expect(m.claimedCents).toBe('88888');
    expect(report.outcomes['WON']).toBeGreaterThanOrEqual(500);
    expect(report.outcomes['SOLD_OUT']).toBeGreaterThan(0);
    expect(report.outcomes['NOT_STARTED']).toBeGreaterThan(0);
    expect(report.outcomes['ALREADY_GRABBED']).toBeGreaterThan(0);
    expect(report.waves.reduce((s, w) => s + w.calls, 0)).toBe(report.calls);
    expect(report.stats.state).not.toBe('CAMPAIGN_STATE_OPEN');

    // the money trail: deposit -> escrow -> awards + refund -> spent, and the audit as a check row
    const t = report.moneyTrail!;
    expect(t).not.toBeNull();
    expect([t.depositCents, t.escrowCents]).toEqual(['88888', '88888']);
    expect(t.awardsCents).toBe(report.settlement!.amountAwardedCents);
    expect(BigInt(t.awardsCents!) + BigInt(t.refundCents!)).toBe(88888n);
    expect(t.withdrawals).toHaveLength(3);
    for (const w of t.withdrawals) {
      expect(BigInt(w.amountCents)).toBe(BigInt(w.awardCents) / 2n);
      expect(BigInt(w.balanceAfterCents)).toBe(BigInt(w.awardCents) - BigInt(w.amountCents));
    }
    expect(t.spentCents).toBe(String(t.withdrawals.reduce((a, w) => a + BigInt(w.amountCents), 0n)));
    expect(t.audit).toMatchObject({ consistent: true, problems: [] });
    const row = (what: string) => report.checks.find((c) => c.what === what);
    expect(row('the books balance (AuditLedger)')).toMatchObject({
      ok: true,
      detail: expect.stringMatching(/^consistent: /),
    });
    expect(row('winners withdrew half their award (Withdraw): balance = award - withdrawn')?.ok).toBe(true);
    // and the ledger says the same: escrow empty, the owner got the refund, winners hold the rest
    const [accounts] = await db.pool.query<RowDataPacket[]>('SELECT account_id, balance_cents FROM accounts');
    const balance = new Map(accounts.map((a) => [String(a['account_id']), BigInt(a['balance_cents'])]));
    expect(balance.get(`escrow:${report.campaignId}`)).toBe(0n);
    expect(balance.get('operator:demo-owner')).toBe(BigInt(t.refundCents!));
    for (const w of t.withdrawals) expect(balance.get(`user:${w.userId}`)).toBe(BigInt(w.balanceAfterCents));
    expect(balance.get('external')).toBe(-(88888n - BigInt(t.spentCents)));

    // everything it started is stopped, its own Redis too
    expect(report.durability).toMatch(/^aof \(appendfsync always, a redis-server of the demo's own on :(\d+)\)$/);
    const ownPort = Number(/:(\d+)\)$/.exec(report.durability)?.[1]);
    expect(report.services.map((s) => s.name)).toContain('grab-svc');
    for (const s of report.services) expect(gone(s.pid), s.name).toBe(true);
    await expect(requireRedis(`redis://127.0.0.1:${ownPort}`)).rejects.toThrow(/not reachable/);
  });

  it('on Ctrl-C stops the services it started and removes its campaign', async () => {
    const p = startCli(['demo', '--packets', '300', '--users', '1000', '--interval', '3s', '-c', '20'], DEMO_ENV);
    const pid = Number(
      await pollUntil('grab-svc started', () => /grab-svc serves on \S+ \(pid (\d+)\)/.exec(p.out.stderr)?.[1], 30_000),
    );
    const id = await pollUntil('the campaign', () => /campaign (\S+): /.exec(p.out.stderr)?.[1], 30_000);
    campaigns.push(id);
    // the console came up beside the services, its address printed at the start
    const consoleUrl = await pollUntil(
      'the console',
      () => /console (http:\/\/\S+\/) /.exec(p.out.stderr)?.[1],
      30_000,
    );
    expect((await fetch(consoleUrl)).status).toBe(200);
    expect((await fetch(`${consoleUrl}api/campaigns`)).status).toBe(401);
    await pollUntil('the first wave', () => p.out.stderr.includes('early birds'), 30_000);
    p.kill('SIGINT');
    const code = await pollUntil('the demo to exit', () => p.exitCode ?? undefined, 15_000);
    expect(code).toBe(130);
    expect(p.out.stderr).toContain('stopping the services the demo started');
    expect(gone(pid)).toBe(true);
    // as in the test above: the demo keeps its campaign's keys when gift-svc ran (afterAll removes them)
    if (!p.out.stderr.includes('gift-svc serves')) expect(await redis.exists(keys.meta(id))).toBe(0);
  });

  it('exits 3 with a clear message when Redis or MySQL is down, before starting anything', async () => {
    const port = await freePort();
    const redisDown = await cli(['demo', '--users', '10', '--packets', '5'], {
      REDIS_URL: `redis://127.0.0.1:${port}`,
    });
    expect(redisDown.code).toBe(3);
    expect(redisDown.stderr).toContain(`Redis is not reachable at redis://127.0.0.1:${port}`);
    expect(redisDown.stderr).not.toContain('grab-svc serves');

    const mysqlDown = await cli(['demo', '--users', '10', '--packets', '5'], {
      MYSQL_URL: `mysql://root@127.0.0.1:${port}/redpacket`,
    });
    expect(mysqlDown.code).toBe(3);
    expect(mysqlDown.stderr).toContain('migrations failed (is MySQL up at');
    expect(mysqlDown.stderr).not.toContain('grab-svc serves');
  });
});

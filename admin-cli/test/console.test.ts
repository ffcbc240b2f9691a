/**
 * `redpacket console` in a real browser: the real binary serving the page, a spawned grab-svc
 * (with its metrics endpoint), a GiftService on the real MySQL, wins delivered through RabbitMQ,
 * and Debian's chromium driven by playwright-core. Switches go to a Redis database of this test's
 * own (13), so no running service sees them.
 * CONSOLE_SCREENSHOT=docs/console.png also writes the screenshot the docs show.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { credentials } from '@grpc/grpc-js';
import { depositBudget } from '@redpacket/ledger/testing';
import type { Pool } from '@redpacket/db';
import { keys, startServer, Switches, type RunningServer } from '@redpacket/lib';
import { bearer, call, requireRedis, testRedisDb, testSigner } from '@redpacket/lib/testing';
import { freePort } from '@redpacket/loadgen';
import {
  AdminServiceClient,
  GrabServiceClient,
  Outcome,
  type GrabRequest,
  type GrabResponse,
  type ListCampaignsRequest,
  type ListCampaignsResponse,
} from '@redpacket/proto';
import type { Redis } from 'ioredis';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGiftServer } from '../../gift-svc/src/server.js';
import {
  awardCount,
  dropCampaign,
  dropTopology,
  requireMysql,
  requireTopology,
  silent,
  testGift,
  testRelay,
} from '../../gift-svc/test/harness.js';
import { yuan } from '../src/format.js';
import { cliJson, pollUntil, startCli, startGrabSvc, type GrabServer } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const SWITCH_DB_URL = testRedisDb(13);
const prefix = `con${randomBytes(4).toString('hex')}`;

let g: GrabServer;
let gift: RunningServer;
let pool: Pool;
let redis: Redis;
let switchRedis: Redis;
let consoleProc: ReturnType<typeof startCli>;
let url: string;
let loginUrl: string;
let browser: Browser;
let page: Page;
let grab: GrabServiceClient;
let admin: AdminServiceClient;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/setup.sh (apt-get install chromium)`);
  pool = await requireMysql();
  redis = await requireRedis();
  switchRedis = await requireRedis(SWITCH_DB_URL);
  const metricsPort = await freePort();
  g = await startGrabSvc({ METRICS_PORT: String(metricsPort) });
  gift = await startServer({
    services: createGiftServer({ pool, redis, tokens: testSigner().verifier(), log: silent }),
    host: '127.0.0.1',
    port: 0,
    log: silent,
  });
  consoleProc = startCli(
    ['console', '--listen', '127.0.0.1:0', '--grab-metrics', `http://127.0.0.1:${metricsPort}/metrics`],
    { ...g.env, GIFT_ADDR: `127.0.0.1:${gift.port}`, REDIS_URL: SWITCH_DB_URL },
  );
  const printed = await pollUntil(
    'the console URL',
    () => /open (http:\/\/\S+)/.exec(consoleProc.out.stdout) ?? undefined,
    15_000,
    50,
  );
  loginUrl = printed[1]!;
  url = new URL('/', loginUrl).toString();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  });
  page = await (await browser.newContext({ viewport: { width: 1280, height: 1100 } })).newPage();
  // every action asks first; the test says yes
  page.on('dialog', (d) => void d.accept());
  grab = new GrabServiceClient(g.address, credentials.createInsecure());
  admin = new AdminServiceClient(g.address, credentials.createInsecure());
}, 60_000);

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await browser?.close();
  consoleProc?.kill('SIGTERM');
  grab?.close();
  admin?.close();
  await gift?.shutdown(1000);
  await g?.stop();
  await switchRedis?.hdel(keys.switches, 'gift.paused');
  switchRedis?.disconnect();
  redis?.disconnect();
  await pool?.end();
});

const grabAs = async (campaignId: string, user: string, token?: string): Promise<GrabResponse> =>
  call<GrabRequest, GrabResponse>(
    grab.grab,
    grab,
    { campaignId, requestId: `r-${user}` },
    bearer(token ?? (await testSigner().sign({ userId: user }))),
  );

const textOf = (sel: string): Promise<string> => page.locator(sel).innerText();

describe('redpacket console', () => {
  it('answers 401 to every API request without the session (and to a wrong login key)', async () => {
    for (const path of ['api/campaigns', 'api/events', 'api/switches']) {
      const r = await fetch(new URL(path, url));
      expect(r.status, path).toBe(401);
      expect(((await r.json()) as { error: string }).error).toMatch(/not signed in/);
    }
    const forged = await fetch(new URL('api/campaigns', url), { headers: { cookie: 'rp_console=forged' } });
    expect(forged.status).toBe(401);
    const post = await fetch(new URL('api/switches', url), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'gift.paused', on: true }),
    });
    expect(post.status).toBe(401);
    expect(await switchRedis.hexists(keys.switches, 'gift.paused')).toBe(0);
    expect((await fetch(new URL('login?key=wrong', url), { redirect: 'manual' })).status).toBe(401);
    // the login link opens a session held in an HttpOnly cookie; the page script cannot read it
    await page.goto(loginUrl);
    expect(page.url()).toBe(url);
    const cookies = await page.context().cookies();
    expect(cookies).toEqual([expect.objectContaining({ name: 'rp_console', httpOnly: true, sameSite: 'Strict' })]);
    expect(await page.evaluate('document.cookie')).toBe('');
  });

  it('shows a campaign created through the API; a crowd moves claimed and the chart live; close and settle show the refund', async () => {
    await depositBudget(pool, `${prefix}owner`, 5000);
    const c = await cliJson<{ campaignId: string }>(
      [
        'campaign',
        'create',
        '--name',
        `${prefix} gala`,
        '--total',
        '50',
        '--packets',
        '20',
        '--batches',
        '2',
        '--interval',
        '8s',
        '--owner',
        `${prefix}owner`,
      ],
      g.env,
    );
    const id = g.track(c.campaignId);
    cleanups.push(() => dropCampaign(redis, pool, id));
    const row = page.locator(`tr[data-id="${id}"]`);
    await row.waitFor({ timeout: 5_000 });
    expect(await row.innerText()).toMatch(
      new RegExp(`${prefix} gala\\s+${prefix}owner\\s+open\\s+0 of 20\\s+¥0\\.00 of ¥50\\.00`),
    );
    await row.click();
    await page.locator('#d-name', { hasText: `${prefix} gala` }).waitFor();
    await pollUntil('the first batch released', async () => (await textOf('#released')) === '10 / 20', 5_000, 50);
    expect(await page.locator('#batches tr').count()).toBe(2);
    expect(await textOf('#batches tr:nth-child(2)')).toMatch(/10\s+next, in \d+ s/);
    expect(await textOf('#next-batch')).toMatch(/^\d+ s$/);

    // the page must not reload: a marker set now survives to the end
    await page.evaluate('window.marker = 1');
    let won = 0n;
    let wins = 0;
    for (let wave = 0; wave < 3; wave++) {
      const answers = await Promise.all(Array.from({ length: 4 }, (_, i) => grabAs(id, `${prefix}u${wave}-${i}`)));
      for (const a of answers) {
        if (a.outcome === Outcome.WON) {
          wins++;
          won += a.amountCents;
        }
      }
      await pollUntil('the page claimed count', async () => (await textOf('#claimed')) === String(wins), 3_000, 50);
    }
    expect(wins).toBe(10); // 12 grabs on the 10 packets of the first batch
    await expect(grabAs(id, `${prefix}bad`, 'not-a-token')).rejects.toMatchObject({ code: 16 });
    await pollUntil(
      'the chart has the grabs',
      async () => Number(await page.locator('#chart').getAttribute('data-grabs')) >= 12,
      5_000,
      50,
    );
    await pollUntil(
      'a verification error counted',
      async () => /^[1-9]/.test(await textOf('[data-outcome="UNAUTHENTICATED"] td:nth-child(2)')),
      5_000,
      100,
    );
    expect(await textOf('[data-outcome="WON"]')).toMatch(/won\s+10/);
    expect(await textOf('[data-outcome="SOLD_OUT"]')).toMatch(/sold out\s+2/);
    expect(await textOf('#in-flight')).toBe('10');
    expect(await textOf('#money-sum')).toMatch(/= ¥50\.00 of ¥50\.00 ✓/);
    if (process.env['CONSOLE_SCREENSHOT'])
      await page.screenshot({ path: process.env['CONSOLE_SCREENSHOT'], fullPage: true });

    // settle before delivery: the service's FAILED_PRECONDITION, shown as it said it
    await page.click('[data-action="close"]');
    await page.locator('#d-state', { hasText: 'ended' }).waitFor({ timeout: 5_000 });
    await page.click('[data-action="settle"]');
    await page
      .locator('#error', { hasText: /not possible now: 10 win\(s\) still in flight/ })
      .waitFor({ timeout: 5_000 });

    const t = await requireTopology();
    cleanups.push(() => dropTopology(t));
    const relay = await testRelay(t, [id]);
    const consumer = await testGift(t, pool);
    try {
      await pollUntil('the 10 wins in MySQL', async () => (await awardCount(pool, id)).n === 10, 20_000, 50);
    } finally {
      await relay.stop();
      await consumer.stop();
    }
    await pollUntil('delivered on the page', async () => (await textOf('#in-flight')) === '0', 5_000, 50);
    expect(await textOf('#delivered')).toBe(`10 (${yuan(won)})`);
    await page.click('[data-action="settle"]');
    const refund = 5000n - won;
    await page.locator('#refund', { hasText: yuan(refund) }).waitFor({ timeout: 5_000 });
    expect(await textOf('#money-settle')).toMatch(/= ¥50\.00 ✓/);
    expect(await page.locator('#money-settle').getAttribute('class')).toBe('ok');
    expect(await textOf('#d-state')).toBe('settled');
    await page.click('[data-action="reconcile"]');
    await page.locator('#money-reconcile', { hasText: 'consistent ✓' }).waitFor({ timeout: 5_000 });
    expect(await page.evaluate('window.marker')).toBe(1);
  }, 45_000);

  it("a create form with a bad field shows the service's INVALID_ARGUMENT message and creates nothing", async () => {
    const name = `${prefix} bad owner`;
    await page.fill('#create-form [name="name"]', name);
    await page.fill('#create-form [name="owner"]', 'no spaces allowed');
    await page.click('#create-form button[type="submit"]');
    await page.locator('#error', { hasText: 'invalid request' }).waitFor({ timeout: 5_000 });
    expect(await textOf('#error')).toMatch(/owner_id.*must be 1-128 characters of/);
    const md = bearer(await testSigner().sign({ userId: 'console-test', role: 'admin' }));
    const all = await call<ListCampaignsRequest, ListCampaignsResponse>(
      admin.listCampaigns,
      admin,
      { pageSize: 500, pageToken: '' },
      md,
    );
    expect(all.campaigns.filter((c) => c.name === name)).toEqual([]);
  });

  it('a switch toggled in the page is seen by lib Switches within 2 s', async () => {
    const switches = new Switches(switchRedis, silent, { refreshMs: 200 });
    await switches.start();
    try {
      expect(switches.isOn('gift.paused')).toBe(false);
      const button = page.locator('[data-switch="gift.paused"]');
      expect(await button.getAttribute('data-on')).toBe('false');
      const clicked = Date.now();
      await button.click();
      await pollUntil('Switches sees gift.paused on', () => switches.isOn('gift.paused'), 2_000, 20);
      expect(Date.now() - clicked).toBeLessThan(2_000);
      await page.locator('[data-switch="gift.paused"][data-on="true"]').waitFor({ timeout: 3_000 });
      await page.locator('[data-switch="gift.paused"]').click();
      await pollUntil('Switches sees gift.paused off', () => !switches.isOn('gift.paused'), 2_000, 20);
    } finally {
      switches.stop();
    }
  });
});

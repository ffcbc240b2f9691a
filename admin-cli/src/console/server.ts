/**
 * The operator's console: plain static files, a JSON API and a Server-Sent Events feed (one message
 * a refresh) over the services' gRPC APIs, called with the operator's token. The token stays here:
 * the browser holds only an HttpOnly, SameSite=Strict session cookie, got by opening the login link
 * this server prints; every /api request without a valid session gets 401.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { checkSwitchName, listSwitches, setSwitch, UnknownSwitchError } from '@redpacket/lib';
import type { Campaign, CampaignStats, DeliveryStats, Reconciliation, Settlement } from '@redpacket/proto';
import { CampaignState } from '@redpacket/proto';
import type { Redis } from 'ioredis';
import { createRequest } from '../commands/campaign.js';
import { nextFrame, type WatchFrame } from '../commands/watch.js';
import type { CliContext } from '../context.js';
import { CliError, Exit, usageError } from '../errors.js';
import { plain, stateName } from '../format.js';
import { campaignView, unauthenticatedGrabs } from './view.js';

export interface ConsoleOptions {
  /** The operator's context: its token signs every gRPC call. */
  ctx: CliContext;
  /** Where the degrade switches live (lib's Switches reads the same hash). */
  redis: Redis;
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** grab-svc's Prometheus endpoint (http://host:METRICS_PORT/metrics), for verification errors. */
  grabMetricsUrl?: string;
  /** Period of the live feed (default 1000 ms). */
  refreshMs?: number;
}

export interface RunningConsole {
  /** http://host:port/ */
  url: string;
  /** Opens a session: the URL to give the operator's browser (it holds a one-time-printed key, not the token). */
  loginUrl: string;
  close(): Promise<void>;
}

const STATIC_DIR = fileURLToPath(new URL('../../static/', import.meta.url));
const require = createRequire(import.meta.url);
/** Served from the installed package (no CDN, no copy in the repo). */
const VENDOR: Record<string, [string, string]> = {
  '/vendor/uplot.js': [require.resolve('uplot/dist/uPlot.iife.min.js'), 'text/javascript'],
  '/vendor/uplot.css': [require.resolve('uplot/dist/uPlot.min.css'), 'text/css'],
};
const STATIC: Record<string, [string, string]> = {
  '/': [`${STATIC_DIR}index.html`, 'text/html'],
  '/console.js': [`${STATIC_DIR}console.js`, 'text/javascript'],
  '/console.css': [`${STATIC_DIR}console.css`, 'text/css'],
  ...VENDOR,
};
const COOKIE = 'rp_console';
const MAX_BODY = 64 * 1024;

/** HTTP status for a CliError's exit code: the page shows the message as the service said it. */
function httpStatus(err: unknown): number {
  if (!(err instanceof CliError)) return 500;
  switch (err.exitCode) {
    case Exit.usage:
      return 400;
    case Exit.notFound:
      return 404;
    case Exit.denied:
      return 403;
    case Exit.precondition:
      return 409;
    case Exit.unavailable:
      return 502;
    default:
      return 500;
  }
}

function sendJson(res: ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  // a cross-site form cannot send application/json without a preflight this server never answers
  if (!(req.headers['content-type'] ?? '').startsWith('application/json')) {
    throw usageError('send the request as application/json');
  }
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw usageError('request body too large');
    chunks.push(chunk);
  }
  try {
    const v: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // answered below
  }
  throw usageError('the request body is not a JSON object');
}

const text = (body: Record<string, unknown>, field: string, fallback = ''): string => {
  const v = body[field];
  return v === undefined || v === null || v === '' ? fallback : String(v);
};

/** A whole number from the form, else a message naming the field; range checks are the service's. */
function whole(body: Record<string, unknown>, field: string, fallback?: number): number {
  const t = text(body, field, fallback === undefined ? '' : String(fallback)).trim();
  if (!/^-?\d+$/.test(t)) throw usageError(`${field}: "${t}" is not a whole number`);
  return Number(t);
}

function cookieSession(req: IncomingMessage): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, v] = part.trim().split('=');
    if (k === COOKIE && v) return v;
  }
  return undefined;
}

const sameSecret = (a: string, b: string): boolean => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

export async function startConsole(opts: ConsoleOptions): Promise<RunningConsole> {
  const { ctx, redis } = opts;
  const admin = ctx.admin();
  const grab = ctx.grab();
  const gift = ctx.gift();
  const refreshMs = opts.refreshMs ?? 1000;
  const loginKey = randomBytes(24).toString('base64url');
  const sessions = new Set<string>();
  // Settled campaigns never change their settlement; reconcile runs only when asked.
  const settlements = new Map<string, Settlement>();
  const reconciles = new Map<string, { result: Reconciliation; at: Date }>();
  const feeds = new Set<ServerResponse>();

  async function campaigns(): Promise<unknown[]> {
    const page = await admin.call(admin.client.listCampaigns, { pageSize: 100, pageToken: '' });
    return page.campaigns.map((c) => ({
      campaignId: c.campaignId,
      name: c.name,
      ownerId: c.ownerId,
      state: stateName(c.state),
      packetsClaimed: c.packetsClaimed,
      packetCount: c.packetCount,
      amountClaimedCents: String(c.amountClaimedCents),
      totalCents: String(c.totalCents),
    }));
  }

  async function unauthenticated(): Promise<number | undefined> {
    if (!opts.grabMetricsUrl) return undefined;
    try {
      const res = await fetch(opts.grabMetricsUrl, { signal: AbortSignal.timeout(Math.min(800, refreshMs)) });
      return res.ok ? unauthenticatedGrabs(await res.text()) : undefined;
    } catch {
      return undefined;
    }
  }

  async function settlementOf(c: Campaign, stats: CampaignStats): Promise<Settlement | undefined> {
    if (stats.state !== CampaignState.CAMPAIGN_STATE_SETTLED) return undefined;
    let s = settlements.get(c.campaignId);
    if (!s) {
      // SettleCampaign on a settled campaign changes nothing and returns its settlement
      s = await admin.call(admin.client.settleCampaign, { campaignId: c.campaignId });
      settlements.set(c.campaignId, s);
    }
    return s;
  }

  /** One campaign's view; `prev` carries the last frame of this feed for the per-second rates. */
  async function view(id: string, prev: { frame?: WatchFrame; unauth?: number; atMs?: number }): Promise<unknown> {
    const [c, stats, unauth] = await Promise.all([
      grab.call(grab.client.getCampaign, { campaignId: id }),
      admin.call(admin.client.getCampaignStats, { campaignId: id }),
      unauthenticated(),
    ]);
    let delivery: DeliveryStats | undefined;
    let deliveryError: string | undefined;
    try {
      delivery = await gift.call(gift.client.getDeliveryStats, { campaignId: id }, Math.max(500, refreshMs));
    } catch (err) {
      deliveryError = (err as Error).message;
    }
    const frame = nextFrame(stats, delivery, deliveryError, prev.frame);
    const nowMs = Date.now();
    const unauthenticatedPerSecond =
      unauth !== undefined && prev.unauth !== undefined && prev.atMs !== undefined && nowMs > prev.atMs
        ? Math.round(((unauth - prev.unauth) * 1000) / (nowMs - prev.atMs))
        : unauth !== undefined
          ? 0
          : undefined;
    Object.assign(prev, { frame, unauth, atMs: nowMs });
    return campaignView(c, frame, {
      nowMs,
      settlement: await settlementOf(c, stats),
      reconcile: reconciles.get(id),
      unauthenticated: unauth,
      unauthenticatedPerSecond,
    });
  }

  async function feed(req: IncomingMessage, res: ServerResponse, id: string | null): Promise<void> {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    feeds.add(res);
    let open = true;
    req.once('close', () => {
      open = false;
      feeds.delete(res);
    });
    const prev: { frame?: WatchFrame; unauth?: number; atMs?: number } = {};
    while (open) {
      const started = Date.now();
      const msg: Record<string, unknown> = { at: new Date(started).toISOString() };
      const errors: string[] = [];
      const [list, switches, selected] = await Promise.allSettled([
        campaigns(),
        listSwitches(redis),
        id ? view(id, prev) : Promise.resolve(null),
      ]);
      for (const [key, r] of [
        ['campaigns', list],
        ['switches', switches],
        ['campaign', selected],
      ] as const) {
        if (r.status === 'fulfilled') msg[key] = r.value;
        else errors.push((r.reason as Error).message);
      }
      if (switches.status === 'fulfilled') {
        msg['switches'] = switches.value.filter((s) => !s.name.includes(':') && s.value === undefined);
      }
      msg['errors'] = errors;
      if (!open) break;
      res.write(`data: ${JSON.stringify(msg)}\n\n`);
      await new Promise((r) => setTimeout(r, Math.max(50, refreshMs - (Date.now() - started))));
    }
  }

  const actions: Record<string, (id: string, body: Record<string, unknown>) => Promise<unknown>> = {
    close: async (id, body) =>
      plain(
        await admin.call(admin.client.closeCampaign, {
          campaignId: id,
          reason: text(body, 'reason', 'closed in the console'),
        }),
      ),
    settle: async (id) => {
      const s = await admin.call(admin.client.settleCampaign, { campaignId: id });
      settlements.set(id, s);
      return plain(s);
    },
    reconcile: async (id) => {
      const r = await admin.call(admin.client.reconcileCampaign, { campaignId: id });
      reconciles.set(id, { result: r, at: new Date() });
      return plain(r);
    },
  };

  async function createCampaign(body: Record<string, unknown>): Promise<unknown> {
    const req = createRequest({
      name: text(body, 'name'),
      total: text(body, 'total'),
      packets: whole(body, 'packets'),
      split: text(body, 'split') === 'equal' ? 'equal' : 'random',
      batches: whole(body, 'batches', 1),
      interval: whole(body, 'intervalMs', 0),
      startsAt: text(body, 'startsAt', 'now'),
      expiresAt: text(body, 'expiresAt') || undefined,
      duration: whole(body, 'durationMs', 3_600_000),
      owner: text(body, 'owner', 'ops'),
    });
    return plain(await admin.call(admin.client.createCampaign, req));
  }

  async function setSwitchFromPage(body: Record<string, unknown>): Promise<unknown> {
    const name = text(body, 'name');
    const on = body['on'] === true;
    try {
      checkSwitchName(name);
    } catch (err) {
      if (err instanceof UnknownSwitchError) throw usageError(err.message);
      throw err;
    }
    await setSwitch(redis, name, on);
    return { name, on };
  }

  async function api(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const path = url.pathname;
    const post = req.method === 'POST';
    if (!post && req.method !== 'GET') return sendJson(res, 405, { error: `${req.method} is not allowed` });
    if (path === '/api/events' && !post) return feed(req, res, url.searchParams.get('campaign'));
    if (path === '/api/campaigns') {
      return sendJson(
        res,
        post ? 201 : 200,
        post ? await createCampaign(await readJson(req)) : { campaigns: await campaigns() },
      );
    }
    if (path === '/api/switches') {
      return sendJson(
        res,
        200,
        post ? await setSwitchFromPage(await readJson(req)) : { switches: await listSwitches(redis) },
      );
    }
    if (path === '/api/deadletters/redrive' && post) {
      const body = await readJson(req);
      return sendJson(
        res,
        200,
        plain(
          await gift.call(gift.client.redriveDeadLetters, { campaignId: text(body, 'campaignId'), deadLetterIds: [] }),
        ),
      );
    }
    const m = /^\/api\/campaigns\/([^/]+)(?:\/(close|settle|reconcile))?$/.exec(path);
    if (m) {
      const id = decodeURIComponent(m[1]!);
      if (!m[2] && !post) return sendJson(res, 200, await view(id, {}));
      const act = m[2] ? actions[m[2]] : undefined;
      if (act && post) return sendJson(res, 200, await act(id, await readJson(req)));
    }
    sendJson(res, 404, { error: `no such API: ${req.method} ${path}` });
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://console');
    if (url.pathname === '/login') {
      if (!sameSecret(url.searchParams.get('key') ?? '', loginKey)) {
        res.writeHead(401, { 'content-type': 'text/plain; charset=utf-8' });
        return void res.end('not signed in: open the login link that `redpacket console` printed\n');
      }
      const sid = randomBytes(32).toString('base64url');
      sessions.add(sid);
      res.writeHead(303, { location: '/', 'set-cookie': `${COOKIE}=${sid}; HttpOnly; SameSite=Strict; Path=/` });
      return void res.end();
    }
    if (url.pathname.startsWith('/api/')) {
      const sid = cookieSession(req);
      if (!sid || !sessions.has(sid))
        return sendJson(res, 401, { error: 'not signed in: open the login link that `redpacket console` printed' });
      try {
        await api(req, res, url);
      } catch (err) {
        if (res.headersSent) return void res.end();
        sendJson(res, httpStatus(err), { error: (err as Error).message });
      }
      return;
    }
    const file = req.method === 'GET' ? STATIC[url.pathname] : undefined;
    if (!file) return sendJson(res, 404, { error: 'not found' });
    res.writeHead(200, { 'content-type': `${file[1]}; charset=utf-8`, 'cache-control': 'no-cache' });
    res.end(await readFile(file[0]));
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: (err as Error).message });
      else res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}/`;
  return {
    url,
    loginUrl: `${url}login?key=${loginKey}`,
    async close() {
      for (const f of feeds) f.end();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

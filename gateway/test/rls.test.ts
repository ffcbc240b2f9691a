/**
 * gateway against the real Redis, called over gRPC exactly as Envoy calls it: the descriptors
 * come from envoy/envoy.yaml's rate_limits, the rules from the shipped gateway/config/ratelimit.yaml.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Metadata, status } from '@grpc/grpc-js';
import { createLogger, createRedis, HotCounter, keys, type RedisClient, type RunningServer } from '@redpacket/lib';
import { call, deleteKeys, grpcError, pollUntil, requireRedis, TEST_REDIS_URL } from '@redpacket/lib/testing';
import type { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parse, stringify } from 'yaml';
import { parseConfig, type RateLimitConfig } from '../src/config.js';
import { Limiter, type LimiterOptions } from '../src/limiter.js';
import { registerScripts } from '../src/scripts.js';
import { REASON_HEADER, type RateLimitResponse } from '../src/server.js';
import { descriptorsFor, errorShapeKeys, grabHeaders, type WireDescriptor } from './envoy-descriptors.js';
import { serveLimiter, shouldRateLimit, type RlsClient } from './rls-client.js';

const shippedYaml = readFileSync(new URL('../config/ratelimit.yaml', import.meta.url), 'utf8');
type Json = Record<string, unknown>;

/** The shipped rules, optionally changed (e.g. a unit or shadow mode) by `edit`. */
function shippedConfig(edit?: (doc: Json) => void): RateLimitConfig {
  const doc = parse(shippedYaml) as Json;
  edit?.(doc);
  return parseConfig(stringify(doc));
}

/** The per-user rule of the shipped config (route=grab -> user). */
function userRule(doc: Json): Json {
  const grab = (doc['descriptors'] as Json[]).find((d) => d['key'] === 'route' && d['value'] === 'grab') as Json;
  return (grab['descriptors'] as Json[])[0] as Json;
}
const userLimit = Number((userRule(parse(shippedYaml) as Json)['rate_limit'] as Json)['requests_per_unit']);

const log = createLogger('gateway-test', 'silent');

let admin: Redis;
const prefixes: string[] = [];
const campaigns: string[] = [];
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  admin = await requireRedis();
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  for (const p of prefixes) await deleteKeys(admin, `${p}*`);
  for (const c of campaigns) await admin.del(keys.state(c));
  admin.disconnect();
});

const rand = (): string => randomBytes(6).toString('hex');
const newCampaign = (): string => {
  const c = `gwtest-${rand()}`;
  campaigns.push(c);
  return c;
};

interface Gateway {
  client: RlsClient;
  limiter: Limiter;
  redis: RedisClient;
  server: RunningServer;
  prefix: string;
  ask(descriptors: WireDescriptor[], hitsAddend?: number): Promise<RateLimitResponse>;
}

/** A real gateway server on 127.0.0.1:0 with its own key prefix (removed after the tests). */
async function startGateway(
  config: RateLimitConfig,
  opts: Partial<LimiterOptions> & { redisUrl?: string; prefix?: string } = {},
): Promise<Gateway> {
  const prefix = opts.prefix ?? `rltest:${rand()}:`;
  prefixes.push(prefix);
  // As gateway/src/main.ts builds it: no offline queue, a command timeout.
  const redis = createRedis({ url: opts.redisUrl ?? TEST_REDIS_URL, offlineQueue: false, commandTimeoutMs: 2000 });
  redis.on('error', () => undefined);
  registerScripts(redis);
  if (!opts.redisUrl) await pollUntil('the gateway connection to Redis', () => redis.status === 'ready', 5000);
  const limiter = new Limiter({ redis, config, log, registry: new Registry(), keyPrefix: prefix, ...opts });
  const { server, client } = await serveLimiter(limiter, log);
  cleanups.push(async () => {
    client.close();
    await server.shutdown(1000);
    redis.disconnect();
  });
  const ask = (descriptors: WireDescriptor[], hitsAddend = 0): Promise<RateLimitResponse> =>
    shouldRateLimit(client, descriptors, hitsAddend);
  return { client, limiter, redis, server, prefix, ask };
}

const grab = (campaign: string, user: string): WireDescriptor[] =>
  descriptorsFor('grab', { headers: grabHeaders(campaign, user) });
const body = (r: RateLimitResponse): Json => JSON.parse(Buffer.from(r.raw_body).toString('utf8')) as Json;
const header = (r: RateLimitResponse, name: string): string | undefined =>
  r.response_headers_to_add.find((h) => h.key === name)?.value;
const counter = async (g: Gateway, name: string, labels: Record<string, string>): Promise<number> => {
  const metric = g.limiter.metrics[name as keyof Limiter['metrics']];
  const m = await (metric instanceof HotCounter ? metric.counter : metric).get();
  return m.values
    .filter((v) => Object.entries(labels).every(([k, val]) => (v.labels as Record<string, unknown>)[k] === val))
    .reduce((a, v) => a + v.value, 0);
};

describe('gateway: envoy.service.ratelimit.v3 with the shipped rules and envoy.yaml descriptors', () => {
  test('envoy.yaml sends three descriptors for a grab, and every one meets a rule', async () => {
    const g = await startGateway(shippedConfig());
    const d = grab(newCampaign(), `u-${rand()}`);
    expect(d).toHaveLength(3);
    const res = await g.ask(d);
    expect(res.overall_code).toBe('OK');
    expect(res.statuses).toHaveLength(3);
    for (const s of res.statuses) expect(s.current_limit?.requests_per_unit).toBeGreaterThan(0);
    expect(res.statuses[0]?.limit_remaining).toBe(userLimit - 1);
  });

  test('a user is allowed exactly the per-user limit, then refused with a JSON reason; others are not', async () => {
    const g = await startGateway(shippedConfig());
    const campaign = newCampaign();
    const user = `u-${rand()}`;
    let last: RateLimitResponse | undefined;
    for (let i = 0; i < userLimit; i++) {
      last = await g.ask(grab(campaign, user));
      expect(last.overall_code).toBe('OK');
    }
    // The request that takes the last token is allowed, and says so for each descriptor.
    expect(last?.statuses.map((s) => s.code)).toEqual(['OK', 'OK', 'OK']);
    expect(last?.statuses[0]?.limit_remaining).toBe(0);
    const refused = await g.ask(grab(campaign, user));
    expect(refused.overall_code).toBe('OVER_LIMIT');
    expect(refused.statuses[0]?.code).toBe('OVER_LIMIT');
    expect(refused.statuses[1]?.code).toBe('OK');
    expect(header(refused, REASON_HEADER)).toBe('RATE_LIMITED');
    expect(header(refused, 'content-type')).toBe('application/json');
    expect(Number(header(refused, 'retry-after'))).toBeGreaterThan(0);
    expect(body(refused)).toMatchObject({ reason: 'RATE_LIMITED' });
    // redpacket_ratelimit_decisions_total: the user rule said ok userLimit times, then over_limit once
    const userRuleId = String(last?.statuses[0]?.current_limit?.name);
    expect(userRuleId).toMatch(/user/);
    expect(await counter(g, 'ruleDecisions', { rule: userRuleId, result: 'ok' })).toBe(userLimit);
    expect(await counter(g, 'ruleDecisions', { rule: userRuleId, result: 'over_limit' })).toBe(1);
    expect((await g.ask(grab(campaign, `u-${rand()}`))).overall_code).toBe('OK');
    expect(await counter(g, 'ruleDecisions', { rule: userRuleId, result: 'ok' })).toBe(userLimit + 1);
    // the three rules had their say in each allowed request; the refused one was answered from the
    // over-limit cache by the user rule alone
    expect(await counter(g, 'ruleDecisions', {})).toBe(3 * (userLimit + 1) + 1);
  });

  test.each([
    ['sold_out', 'SOLD_OUT'],
    ['ended', 'ENDED'],
    ['not_started', 'NOT_STARTED'],
  ])('a campaign flagged %s is refused as %s without counting', async (flag, reason) => {
    const g = await startGateway(shippedConfig());
    const campaign = newCampaign();
    await admin.set(keys.state(campaign), flag, 'PX', 60_000);
    const res = await g.ask(grab(campaign, `u-${rand()}`));
    expect(res.overall_code).toBe('OVER_LIMIT');
    expect(header(res, REASON_HEADER)).toBe(reason);
    expect(body(res)).toMatchObject({ reason, campaign_id: campaign });
    expect(await counter(g, 'redisCalls', { kind: 'take' })).toBe(0);
    expect(await counter(g, 'ruleDecisions', { rule: 'campaign_state', result: flag })).toBe(1);
    expect(await counter(g, 'ruleDecisions', {})).toBe(1);
    expect(await admin.keys(`${g.prefix}*`)).toEqual([]);
  });

  test('a flood on a sold-out campaign and from a user over the limit costs no Redis call', async () => {
    const g = await startGateway(shippedConfig(), { overLimitCacheMs: 3000, flagCacheMs: 3000 });
    const soldOut = newCampaign();
    const open = newCampaign();
    await admin.set(keys.state(soldOut), 'sold_out', 'PX', 60_000);
    const user = `u-${rand()}`;
    for (let i = 0; i <= userLimit; i++) await g.ask(grab(open, user));
    await g.ask(grab(soldOut, `u-${rand()}`));
    const before = await counter(g, 'redisCalls', {});
    // From here on Redis is unreachable for this gateway: any call would fail (and be counted).
    g.redis.disconnect();
    const flood = await Promise.all(
      Array.from({ length: 1000 }, (_, i) => (i % 2 ? g.ask(grab(soldOut, `u-${rand()}`)) : g.ask(grab(open, user)))),
    );
    expect(flood.filter((r) => r.overall_code === 'OVER_LIMIT')).toHaveLength(1000);
    expect(flood.filter((r) => header(r, REASON_HEADER) === 'SOLD_OUT')).toHaveLength(500);
    expect(flood.filter((r) => header(r, REASON_HEADER) === 'RATE_LIMITED')).toHaveLength(500);
    expect(await counter(g, 'redisCalls', {})).toBe(before);
    expect(await counter(g, 'redisErrors', {})).toBe(0);
  });

  test('when an over-limit entry expires, one request asks Redis and a concurrent flood does not', async () => {
    const g = await startGateway(shippedConfig(), { overLimitCacheMs: 100 });
    const campaign = newCampaign();
    const user = `u-${rand()}`;
    for (let i = 0; i <= userLimit; i++) await g.ask(grab(campaign, user));
    const cachedAt = Date.now();
    // The entry lives 100 ms; the bucket refills one token every few seconds, so it stays empty.
    await pollUntil('the over-limit entry to expire', () => Date.now() - cachedAt > 150, 2000, 20);
    const before = await counter(g, 'redisCalls', { kind: 'take' });
    const flood = await Promise.all(Array.from({ length: 300 }, () => g.ask(grab(campaign, user))));
    expect(flood.every((r) => r.overall_code === 'OVER_LIMIT')).toBe(true);
    expect((await counter(g, 'redisCalls', { kind: 'take' })) - before).toBe(1);
  });

  test('a not_started flag is not remembered past its expiry: the campaign opens at its start', async () => {
    const g = await startGateway(shippedConfig(), { flagCacheMs: 5000 });
    const campaign = newCampaign();
    await admin.set(keys.state(campaign), 'not_started', 'PX', 400);
    const early = await g.ask(grab(campaign, `u-${rand()}`));
    expect(header(early, REASON_HEADER)).toBe('NOT_STARTED');
    const opened = await pollUntil(
      'the campaign to open',
      async () => {
        const r = await g.ask(grab(campaign, `u-${rand()}`));
        return r.overall_code === 'OK' && r;
      },
      3000,
      25,
    );
    expect(opened.statuses).toHaveLength(3);
  });

  test('new rules take over at once (SIGHUP reload), forgetting what the old ones cached', async () => {
    const g = await startGateway(shippedConfig());
    const campaign = newCampaign();
    const user = `u-${rand()}`;
    for (let i = 0; i < userLimit; i++) await g.ask(grab(campaign, user));
    expect((await g.ask(grab(campaign, user))).overall_code).toBe('OVER_LIMIT');
    g.limiter.setConfig(
      shippedConfig((doc) => (userRule(doc)['rate_limit'] = { unit: 'minute', requests_per_unit: userLimit * 3 })),
    );
    const after = await g.ask(grab(campaign, user));
    expect(after.overall_code).toBe('OK');
    expect(after.statuses[0]?.current_limit?.requests_per_unit).toBe(userLimit * 3);
  });

  test('shadow mode counts but never refuses', async () => {
    const g = await startGateway(shippedConfig((doc) => (userRule(doc)['shadow_mode'] = true)));
    const campaign = newCampaign();
    const user = `u-${rand()}`;
    const answers = [];
    for (let i = 0; i < userLimit + 3; i++) answers.push(await g.ask(grab(campaign, user)));
    expect(answers.every((r) => r.overall_code === 'OK')).toBe(true);
    expect(answers.at(-1)?.statuses[0]?.limit_remaining).toBe(0);
    expect(await counter(g, 'shadowOver', {})).toBe(3);
    const userRuleId = String(answers[0]?.statuses[0]?.current_limit?.name);
    expect(await counter(g, 'ruleDecisions', { rule: userRuleId, result: 'shadow_over_limit' })).toBe(3);
    expect(await counter(g, 'ruleDecisions', { rule: userRuleId, result: 'ok' })).toBe(userLimit);
  });

  test('hits_addend takes that many tokens', async () => {
    const g = await startGateway(shippedConfig());
    const campaign = newCampaign();
    const user = `u-${rand()}`;
    const big = Math.ceil(userLimit / 2) + 1; // two of these do not fit
    expect((await g.ask(grab(campaign, user), big)).overall_code).toBe('OK');
    expect((await g.ask(grab(campaign, user), big)).overall_code).toBe('OVER_LIMIT');
    const left = userLimit - big;
    expect((await g.ask(grab(campaign, user), left)).overall_code).toBe('OK');
    expect((await g.ask(grab(campaign, `u-${rand()}`), userLimit + 1)).overall_code).toBe('OVER_LIMIT');
  });

  test('token requests are limited per client address', async () => {
    const g = await startGateway(shippedConfig());
    const d = descriptorsFor('issue-token', {
      headers: { ':method': 'POST', ':path': '/v1/tokens' },
      remoteAddress: `10.${rand()}`,
    });
    const first = await g.ask(d);
    expect(first.overall_code).toBe('OK');
    expect(first.statuses[0]?.current_limit?.unit).toBe('MINUTE');
  });

  test('Redis down: allowed and counted when failing open, UNAVAILABLE otherwise', async () => {
    const down = 'redis://127.0.0.1:17299'; // nothing listens here
    const open = await startGateway(shippedConfig(), { redisUrl: down, failOpen: true });
    const res = await open.ask(grab(newCampaign(), `u-${rand()}`));
    expect(res.overall_code).toBe('OK');
    expect(await counter(open, 'redisErrors', { kind: 'fail_open' })).toBeGreaterThanOrEqual(1);
    const closed = await startGateway(shippedConfig(), { redisUrl: down, failOpen: false });
    const err = await grpcError(closed.ask(grab(newCampaign(), `u-${rand()}`)));
    expect(err.code).toBe(status.UNAVAILABLE);
  });

  test('bad requests are INVALID_ARGUMENT', async () => {
    const g = await startGateway(shippedConfig());
    const noDomain = call(
      g.client.ShouldRateLimit,
      g.client,
      { domain: '', descriptors: grab('c', 'u') } as never,
      new Metadata(),
    );
    expect((await grpcError(noDomain)).code).toBe(status.INVALID_ARGUMENT);
    expect((await grpcError(g.ask([]))).code).toBe(status.INVALID_ARGUMENT);
  });

  test('10,000 decisions for 100 users at once, over two replicas: each user allowed exactly its limit', async () => {
    const hourly = shippedConfig((doc) => ((userRule(doc)['rate_limit'] as Json)['unit'] = 'hour'));
    const prefix = `rltest:${rand()}:`;
    const a = await startGateway(hourly, { prefix });
    const b = await startGateway(hourly, { prefix });
    const campaign = newCampaign();
    const users = Array.from({ length: 100 }, () => `u-${rand()}`);
    const calls = Array.from({ length: 10_000 }, (_, i) => {
      const user = users[i % 100] as string;
      return (i % 2 ? a : b).ask(grab(campaign, user)).then((r) => [user, r.overall_code] as const);
    });
    const allowed = new Map<string, number>();
    for (const [user, code] of await Promise.all(calls)) {
      if (code === 'OK') allowed.set(user, (allowed.get(user) ?? 0) + 1);
    }
    expect(users.map((u) => allowed.get(u) ?? 0)).toEqual(users.map(() => userLimit));
  });
});

describe("every 429 is the edge's one error shape {code, reason, message, retry_after_ms?}", () => {
  const shape = errorShapeKeys();
  /** The body, checked against the shape envoy.yaml gives Envoy's own errors, and its retry-after. */
  const refusal = (r: RateLimitResponse, reason: string): Json => {
    expect(r.overall_code).toBe('OVER_LIMIT');
    expect(header(r, REASON_HEADER)).toBe(reason);
    expect(header(r, 'content-type')).toBe('application/json');
    const b = body(r);
    expect(Object.keys(b)).toEqual(expect.arrayContaining(shape));
    expect(b).toMatchObject({ code: status.RESOURCE_EXHAUSTED, reason, message: expect.any(String) });
    expect(String(b['message']).length).toBeGreaterThan(0);
    if (b['retry_after_ms'] === undefined) expect(header(r, 'retry-after')).toBeUndefined();
    else expect(Number(header(r, 'retry-after'))).toBe(Math.ceil(Number(b['retry_after_ms']) / 1000));
    return b;
  };

  test('the shape is the one envoy.yaml writes its local replies in', () => {
    expect(shape).toEqual(['code', 'message', 'reason']);
  });

  test('RATE_LIMITED: when to retry, in the body and in retry-after', async () => {
    const g = await startGateway(shippedConfig());
    const campaign = newCampaign();
    const user = `u-${rand()}`;
    for (let i = 0; i < userLimit; i++) await g.ask(grab(campaign, user));
    const b = refusal(await g.ask(grab(campaign, user)), 'RATE_LIMITED');
    expect(b['retry_after_ms']).toBeGreaterThan(0);
    expect(Number.isInteger(b['retry_after_ms'])).toBe(true);
  });

  test.each([
    ['sold_out', 'SOLD_OUT'],
    ['ended', 'ENDED'],
  ])('%s: %s names the campaign and says nothing of retrying', async (flag, reason) => {
    const g = await startGateway(shippedConfig());
    const campaign = newCampaign();
    await admin.set(keys.state(campaign), flag, 'PX', 60_000);
    const b = refusal(await g.ask(grab(campaign, `u-${rand()}`)), reason);
    expect(b['campaign_id']).toBe(campaign);
    expect(b).not.toHaveProperty('retry_after_ms');
    expect(b).not.toHaveProperty('opens_at');
  });

  test('NOT_STARTED: the time the campaign opens, and retry_after_ms until then', async () => {
    const g = await startGateway(shippedConfig());
    const campaign = newCampaign();
    const before = Date.now();
    await admin.set(keys.state(campaign), 'not_started', 'PX', 90_000);
    const b = refusal(await g.ask(grab(campaign, `u-${rand()}`)), 'NOT_STARTED');
    const after = Date.now();
    expect(b['campaign_id']).toBe(campaign);
    const opensAt = Date.parse(String(b['opens_at']));
    expect(new Date(opensAt).toISOString()).toBe(b['opens_at']);
    expect(opensAt).toBeGreaterThanOrEqual(before + 90_000 - 50);
    expect(opensAt).toBeLessThanOrEqual(after + 90_000);
    const retryMs = Number(b['retry_after_ms']);
    expect(retryMs).toBeGreaterThan(90_000 - (after - before) - 50);
    expect(retryMs).toBeLessThanOrEqual(90_000);
    // the same answer again, from the cached flag: the opening time does not move
    const again = refusal(await g.ask(grab(campaign, `u-${rand()}`)), 'NOT_STARTED');
    expect(again['opens_at']).toBe(b['opens_at']);
    expect(Number(again['retry_after_ms'])).toBeLessThanOrEqual(retryMs);
  });
});

describe('rules file', () => {
  test('unknown fields and units are refused', () => {
    expect(() =>
      parseConfig('domain: x\ndescriptors:\n  - key: a\n    rate_limt: {unit: second, requests_per_unit: 1}\n'),
    ).toThrow(/rate_limt/);
    expect(() =>
      parseConfig('domain: x\ndescriptors:\n  - key: a\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n'),
    ).toThrow();
  });
});

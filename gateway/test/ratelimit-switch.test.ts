/**
 * Changing a rate limit at runtime: the `ratelimit.<rule>` switch, written as `redpacket switch set`
 * writes it, seen by a real gateway server (Switches cache, 500 ms) within 2 s, with the shipped
 * rules and the descriptors envoy.yaml sends; removed, the rules file's limit applies again.
 * Everything in a Redis database of this test's own (4), so no other gateway sees the switch.
 */
import { randomBytes } from 'node:crypto';
import {
  BadSwitchValueError,
  createLogger,
  createRedis,
  keys,
  listSwitches,
  rateLimitSwitch,
  registerRateLimitRules,
  setRateLimitOverride,
  Switches,
  UnknownSwitchError,
} from '@redpacket/lib';
import { deleteKeys, pollUntil, requireRedis, testRedisDb } from '@redpacket/lib/testing';
import { freePort, spawnNode } from '@redpacket/loadgen';
import type { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listRules, loadConfig } from '../src/config.js';
import { Limiter } from '../src/limiter.js';
import { registerScripts } from '../src/scripts.js';
import { descriptorsFor, grabHeaders, type WireDescriptor } from './envoy-descriptors.js';
import { rlsClient, serveLimiter, shouldRateLimit } from './rls-client.js';

const OWN_DB_URL = testRedisDb(4);
const config = loadConfig(new URL('../config/ratelimit.yaml', import.meta.url).pathname);
const USER_RULE = 'route_grab.user';
const fileLimit = Number(
  listRules(config)
    .find((r) => r.id === USER_RULE)
    ?.limit.split('/')[0],
);
const log = createLogger('gateway-switch-test', 'silent');

const rand = (): string => randomBytes(5).toString('hex');
let admin: Redis;

beforeAll(async () => {
  admin = await requireRedis(OWN_DB_URL);
  await registerRateLimitRules(admin, listRules(config));
});

afterAll(async () => {
  for (const r of listRules(config)) await admin.hdel(keys.switches, rateLimitSwitch(r.id));
  await admin.del(keys.rateLimitRules);
  admin.disconnect();
});

describe('the ratelimit.<rule> switch', () => {
  it('lowers a rule within 2 s without a restart, and off restores the file limit', async () => {
    const prefix = `rlswitch:${rand()}:`;
    // As gateway/src/main.ts wires it: Switches on the gateway's connection, read by the Limiter.
    const redis = createRedis({ url: OWN_DB_URL, offlineQueue: false, commandTimeoutMs: 2000 });
    registerScripts(redis);
    await pollUntil('the gateway connection to Redis', () => redis.status === 'ready', 5000);
    const switches = new Switches(redis, log);
    await switches.start();
    const limiter = new Limiter({
      redis,
      config,
      log,
      registry: new Registry(),
      keyPrefix: prefix,
      overrides: (id) => switches.rateLimitOverride(id),
    });
    const { server, client } = await serveLimiter(limiter, log);
    const user = `u-${rand()}`;
    const descriptors: WireDescriptor[] = descriptorsFor('grab', { headers: grabHeaders(`c${rand()}`, user) });
    const userIndex = descriptors.findIndex((d) => d.entries.some((e) => e.key === 'user'));
    const ask = async (): Promise<{ code: string; limit: number | undefined }> => {
      const r = await shouldRateLimit(client, descriptors);
      const s = r.statuses[userIndex];
      return { code: r.overall_code, limit: s?.current_limit?.requests_per_unit };
    };
    try {
      expect(userIndex).toBeGreaterThanOrEqual(0);
      expect(fileLimit).toBeGreaterThan(4);
      expect(await ask()).toEqual({ code: 'OK', limit: fileLimit });
      expect(await ask()).toEqual({ code: 'OK', limit: fileLimit });

      const t0 = Date.now();
      expect(await setRateLimitOverride(admin, rateLimitSwitch(USER_RULE), '2')).toBe(2);
      // Polled every 200 ms: a few calls on the old bucket (10 a minute) while the cache refreshes.
      let first = await ask();
      while (first.limit !== 2) {
        if (Date.now() - t0 > 2000) throw new Error('the override was not applied within 2 s');
        await new Promise((r) => setTimeout(r, 200));
        first = await ask();
      }
      expect(Date.now() - t0).toBeLessThan(2000);
      // The new limit's bucket starts full: this call took 1 of 2, one more passes, then refused.
      expect(first).toEqual({ code: 'OK', limit: 2 });
      expect(await ask()).toEqual({ code: 'OK', limit: 2 });
      expect(await ask()).toEqual({ code: 'OVER_LIMIT', limit: 2 });
      expect(await ask()).toEqual({ code: 'OVER_LIMIT', limit: 2 });
      expect((await listSwitches(admin)).find((s) => s.name === rateLimitSwitch(USER_RULE))).toMatchObject({
        on: true,
        value: 2,
      });

      const t1 = Date.now();
      expect(await setRateLimitOverride(admin, rateLimitSwitch(USER_RULE), 'off')).toBeUndefined();
      await pollUntil('the file limit again', async () => (await ask()).limit === fileLimit, 2000, 200);
      expect(Date.now() - t1).toBeLessThan(2000);
      // Back on the file's bucket, which still has tokens: allowed again.
      expect(await ask()).toEqual({ code: 'OK', limit: fileLimit });
      expect(await admin.hexists(keys.switches, rateLimitSwitch(USER_RULE))).toBe(0);
    } finally {
      client.close();
      await server.shutdown(1000);
      switches.stop();
      await deleteKeys(admin, `${prefix}*`);
      redis.disconnect();
    }
  });

  it('refuses a bad value or an unknown rule with a clear error, writing nothing', async () => {
    const name = rateLimitSwitch(USER_RULE);
    for (const bad of ['0', '-1', 'abc', '1.5', '', ' 3', '1e3', '01', '1000000001', 'on']) {
      await expect(setRateLimitOverride(admin, name, bad)).rejects.toThrow(BadSwitchValueError);
    }
    await expect(setRateLimitOverride(admin, name, '0')).rejects.toThrow(
      /ratelimit\.route_grab\.user must be set to a whole number of requests per unit from 1 to 1000000000, or "off"; not "0"/,
    );
    await expect(setRateLimitOverride(admin, 'ratelimit.route_grab.nobody', '5')).rejects.toThrow(UnknownSwitchError);
    await expect(setRateLimitOverride(admin, 'ratelimit.route_grab.nobody', '5')).rejects.toThrow(
      /unknown rate limit rule "route_grab\.nobody"; gateway's rules: .*route_grab\.user/,
    );
    await expect(setRateLimitOverride(admin, 'ratelimit.', '5')).rejects.toThrow(UnknownSwitchError);
    await expect(setRateLimitOverride(admin, 'ratelimit.has space', '5')).rejects.toThrow(UnknownSwitchError);
    const stored = await admin.hgetall(keys.switches);
    expect(Object.keys(stored).filter((k) => k.startsWith('ratelimit.'))).toEqual([]);
  });

  it('every rule of the file is registered, and listed with its limit', async () => {
    const ids = listRules(config).map((r) => r.id);
    expect(ids).toEqual(expect.arrayContaining([USER_RULE, 'path', 'scope_global', 'route_tokens.remote_address']));
    const listed = await listSwitches(admin);
    for (const r of listRules(config)) {
      expect(listed.find((s) => s.name === rateLimitSwitch(r.id))?.description).toContain(r.limit);
    }
  });
});

describe("gateway's main", () => {
  it('registers its rules at start and applies an override set while it runs', async () => {
    await admin.del(keys.rateLimitRules);
    const port = await freePort();
    const child = spawnNode(new URL('../dist/main.js', import.meta.url), [], {
      GRPC_PORT: String(port),
      REDIS_URL: OWN_DB_URL,
      METRICS_PORT: '0',
      LOG_LEVEL: 'info',
    });
    const client = rlsClient(`127.0.0.1:${port}`);
    // the route=tokens rule: per client address, so no other test's bucket
    const descriptors: WireDescriptor[] = descriptorsFor('issue-token', {
      headers: { ':method': 'POST', ':path': '/v1/tokens' },
      remoteAddress: `10.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}.7`,
    });
    const rule = 'route_tokens.remote_address';
    const limitNow = async (): Promise<number | undefined> => {
      const r = await shouldRateLimit(client, descriptors);
      return r.statuses.find((st) => st.current_limit?.name === rule)?.current_limit?.requests_per_unit;
    };
    try {
      await child.waitFor(/gRPC server listening/);
      expect(await admin.hgetall(keys.rateLimitRules)).toEqual(
        Object.fromEntries(listRules(config).map((r) => [r.id, r.limit])),
      );
      const fileValue = Number(
        listRules(config)
          .find((r) => r.id === rule)
          ?.limit.split('/')[0],
      );
      expect(await limitNow()).toBe(fileValue);
      await setRateLimitOverride(admin, rateLimitSwitch(rule), '4');
      await pollUntil('the override in force', async () => (await limitNow()) === 4, 2000, 100);
      await child.waitFor(/rate limit override set/);
      await setRateLimitOverride(admin, rateLimitSwitch(rule), 'off');
      await pollUntil('the file limit again', async () => (await limitNow()) === fileValue, 2000, 100);
    } finally {
      client.close();
      await child.stop();
      await admin.hdel(keys.switches, rateLimitSwitch(rule));
      await deleteKeys(admin, 'rl:*'); // the buckets of this gateway (database 4 is this file's own)
    }
  });
});

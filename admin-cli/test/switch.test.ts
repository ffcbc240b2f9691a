/**
 * `redpacket switch list|set` as a child process against the real Redis. Global switches are
 * set only in a database of this test's own (REDIS_URL .../12), so no running service sees them.
 */
import { randomBytes } from 'node:crypto';
import { keys, listSwitches, registerRateLimitRules } from '@redpacket/lib';
import { requireRedis, testRedisDb } from '@redpacket/lib/testing';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, cliJson } from './helpers.js';

const OWN_DB_URL = testRedisDb(12);
const env = { REDIS_URL: OWN_DB_URL };

interface Listed {
  switches: { name: string; on: boolean; description: string }[];
}

let redis: Redis;
beforeAll(async () => {
  redis = await requireRedis(OWN_DB_URL);
});
afterAll(() => redis?.disconnect());

describe('redpacket switch', () => {
  it('set on / off is what Redis holds and what list --json shows', async () => {
    const campaign = `c${randomBytes(5).toString('hex')}`;
    const perCampaign = `grab.paused:${campaign}`;
    try {
      const before = await cliJson<Listed>(['switch', 'list'], env);
      expect(before.switches.map((s) => s.name)).toEqual(
        expect.arrayContaining(['awards.queries_disabled', 'gift.paused', 'grab.paused']),
      );
      expect(before.switches.find((s) => s.name === 'gift.paused')).toMatchObject({
        on: false,
        description: expect.stringContaining('queueing'),
      });

      expect(await cliJson(['switch', 'set', 'gift.paused', 'on'], env)).toEqual({ name: 'gift.paused', on: true });
      expect(await cliJson(['switch', 'set', perCampaign, 'on'], env)).toEqual({ name: perCampaign, on: true });
      expect(await redis.hgetall(keys.switches)).toMatchObject({ 'gift.paused': 'on', [perCampaign]: 'on' });
      const during = await cliJson<Listed>(['switch', 'list'], env);
      expect(during.switches.find((s) => s.name === 'gift.paused')?.on).toBe(true);
      expect(during.switches.find((s) => s.name === perCampaign)?.on).toBe(true);
      expect(during).toEqual({ switches: await listSwitches(redis) });

      const human = await cli(['switch', 'list'], env);
      expect(human.code).toBe(0);
      expect(human.stdout).toMatch(/gift\.paused\s*│\s*ON/);

      expect(await cliJson(['switch', 'set', 'gift.paused', 'off'], env)).toEqual({ name: 'gift.paused', on: false });
      expect(await cliJson(['switch', 'set', perCampaign, 'off'], env)).toEqual({ name: perCampaign, on: false });
      const after = await cliJson<Listed>(['switch', 'list'], env);
      expect(after.switches.find((s) => s.name === 'gift.paused')?.on).toBe(false);
      expect(after.switches.find((s) => s.name === perCampaign)).toBeUndefined();
      expect(await redis.hexists(keys.switches, 'gift.paused')).toBe(0);
    } finally {
      await redis.hdel(keys.switches, 'gift.paused', perCampaign);
    }
  });

  it('refuses an unknown name or state with exit code 2, writing nothing', async () => {
    const unknown = await cli(['--json', 'switch', 'set', 'gift.pause', 'on'], env);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown switch "gift\.pause"; known switches: grab\.paused/);
    const badState = await cli(['switch', 'set', 'gift.paused', 'yes'], env);
    expect(badState.code).toBe(2);
    expect(badState.stderr).toMatch(/state must be "on" or "off"/);
    expect(await redis.hexists(keys.switches, 'gift.pause')).toBe(0);
    expect(await redis.hexists(keys.switches, 'gift.paused')).toBe(0);
  });

  it('set ratelimit.<rule> N|off: checked against the rules gateway registered (own database 5)', async () => {
    const ownUrl = testRedisDb(5);
    const own = await requireRedis(ownUrl);
    const ownEnv = { REDIS_URL: ownUrl };
    const name = 'ratelimit.route_grab.user';
    try {
      await registerRateLimitRules(own, [
        { id: 'route_grab.user', limit: '10/minute' },
        { id: 'scope_global', limit: '50000/second' },
      ]);
      expect(await cliJson(['switch', 'set', name, '3'], ownEnv)).toEqual({ name, on: true, value: 3 });
      expect(await own.hget(keys.switches, name)).toBe('3');
      const listed = await cliJson<Listed>(['switch', 'list'], ownEnv);
      expect(listed.switches.find((s) => s.name === name)).toMatchObject({ on: true, value: 3 });
      expect(listed.switches.find((s) => s.name === 'ratelimit.scope_global')).toMatchObject({
        on: false,
        description: expect.stringContaining('50000/second'),
      });
      const human = await cli(['switch', 'list'], ownEnv);
      expect(human.stdout).toMatch(/ratelimit\.route_grab\.user\s*│\s*3\s*│/);

      for (const [bad, why] of [
        ['0', /must be set to a whole number of requests per unit from 1/],
        ['-1', /whole number/],
        ['abc', /not "abc"/],
        ['on', /not "on"/],
      ] as const) {
        const r = await cli(['switch', 'set', name, bad], ownEnv);
        expect(r.code, bad).toBe(2);
        expect(r.stderr).toMatch(why);
      }
      const unknown = await cli(['switch', 'set', 'ratelimit.route_grab.nobody', '5'], ownEnv);
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toMatch(
        /unknown rate limit rule "route_grab\.nobody"; gateway's rules: route_grab\.user, scope_global/,
      );
      // nothing written by the refusals: the earlier 3 stands, no new field
      expect(await own.hget(keys.switches, name)).toBe('3');
      expect(await own.hexists(keys.switches, 'ratelimit.route_grab.nobody')).toBe(0);

      expect(await cliJson(['switch', 'set', name, 'off'], ownEnv)).toEqual({ name, on: false });
      expect(await own.hexists(keys.switches, name)).toBe(0);
      const after = await cliJson<Listed>(['switch', 'list'], ownEnv);
      expect(after.switches.find((s) => s.name === name)).toMatchObject({ on: false });
    } finally {
      await own.hdel(keys.switches, name, 'ratelimit.route_grab.nobody');
      await own.del(keys.rateLimitRules);
      own.disconnect();
    }
  });

  it('exits 3 saying so when Redis is unreachable', async () => {
    const r = await cli(['switch', 'list'], { REDIS_URL: 'redis://127.0.0.1:1' });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/Redis is not reachable at redis:\/\/127\.0\.0\.1:1/);
  });
});

/**
 * The degrade switches against the real Redis. Only per-campaign switches of random campaign
 * ids are set in the shared database; global ones only in a database of this test's own.
 */
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import {
  grabPausedFor,
  keys,
  listSwitches,
  setRateLimitOverride,
  setSwitch,
  Switches,
  UnknownSwitchError,
} from '../src/index.js';
import { pollUntil, requireRedis, testRedisDb } from '../src/testing.js';

const silent = pino({ level: 'silent' });
const uid = (): string => randomBytes(6).toString('hex');
/** A Redis database nobody else uses, for the global switches. */
const OWN_DB_URL = testRedisDb(11);

describe('Switches', () => {
  it('sees a flip within 2 s of setSwitch, on and off again, without a restart', async () => {
    const redis = await requireRedis();
    const name = grabPausedFor(`c${uid()}`);
    const switches = new Switches(redis, silent, { refreshMs: 100 });
    try {
      await switches.start();
      expect(switches.isOn(name)).toBe(false);
      await setSwitch(redis, name, true);
      const t0 = Date.now();
      await pollUntil('the switch to read on', () => switches.isOn(name), 2000);
      expect(Date.now() - t0).toBeLessThan(2000);
      expect(await redis.hget(keys.switches, name)).toBe('on');
      await setSwitch(redis, name, false);
      await pollUntil('the switch to read off', () => !switches.isOn(name), 2000);
      expect(await redis.hexists(keys.switches, name)).toBe(0);
    } finally {
      switches.stop();
      await setSwitch(redis, name, false);
      redis.disconnect();
    }
  });

  it('grabPaused honours the global switch and the campaign one (own database)', async () => {
    const redis = await requireRedis(OWN_DB_URL);
    const c = `c${uid()}`;
    const switches = new Switches(redis, silent, { refreshMs: 50 });
    try {
      await switches.start();
      expect(switches.grabPaused(c)).toBe(false);
      await setSwitch(redis, grabPausedFor(c), true);
      await switches.refresh();
      expect(switches.grabPaused(c)).toBe(true);
      expect(switches.grabPaused(`${c}x`)).toBe(false);
      await setSwitch(redis, grabPausedFor(c), false);
      await setSwitch(redis, 'grab.paused', true);
      await switches.refresh();
      expect(switches.grabPaused(c)).toBe(true);
      expect(switches.grabPaused(`${c}x`)).toBe(true);
      expect(switches.isOn('gift.paused')).toBe(false);
    } finally {
      switches.stop();
      await setSwitch(redis, 'grab.paused', false);
      await setSwitch(redis, grabPausedFor(c), false);
      redis.disconnect();
    }
  });

  it('refuses unknown names with the list of known ones, before touching Redis', async () => {
    const redis = await requireRedis();
    try {
      for (const bad of [
        'grab.pause',
        'GIFT.PAUSED',
        'grab.paused:',
        'grab.paused:has space',
        'grab.paused:<campaignId>',
      ]) {
        await expect(setSwitch(redis, bad, true)).rejects.toThrow(UnknownSwitchError);
        expect(await redis.hexists(keys.switches, bad)).toBe(0);
      }
      await expect(setSwitch(redis, 'nope', true)).rejects.toThrow(
        /unknown switch "nope"; known switches: grab\.paused, .*gift\.paused, awards\.queries_disabled/,
      );
    } finally {
      redis.disconnect();
    }
  });

  it('lists every global switch with its description, and the per-campaign ones that are on', async () => {
    const redis = await requireRedis(OWN_DB_URL);
    const c = `c${uid()}`;
    try {
      await setSwitch(redis, grabPausedFor(c), true);
      await setSwitch(redis, 'awards.queries_disabled', true);
      const list = await listSwitches(redis);
      const byName = new Map(list.map((s) => [s.name, s]));
      expect(byName.get('grab.paused')).toMatchObject({ on: false });
      expect(byName.get('gift.paused')).toMatchObject({ on: false });
      expect(byName.get('awards.queries_disabled')).toMatchObject({ on: true });
      expect(byName.get(grabPausedFor(c))).toMatchObject({
        on: true,
        description: expect.stringContaining('one campaign'),
      });
      expect(list.every((s) => s.description.length > 0)).toBe(true);
      expect(list.map((s) => s.name)).toEqual([...list.map((s) => s.name)].sort((a, b) => a.localeCompare(b)));
    } finally {
      await setSwitch(redis, grabPausedFor(c), false);
      await setSwitch(redis, 'awards.queries_disabled', false);
      redis.disconnect();
    }
  });

  it('refuses a rate limit override while no gateway has registered its rules (own database)', async () => {
    const redis = await requireRedis(OWN_DB_URL);
    try {
      expect(await redis.exists(keys.rateLimitRules)).toBe(0);
      await expect(setRateLimitOverride(redis, 'ratelimit.route_grab.user', '5')).rejects.toThrow(
        /no gateway has registered its rate limit rules in this Redis \(rp:ratelimit:rules is empty\): start gateway first/,
      );
      expect(await redis.hexists(keys.switches, 'ratelimit.route_grab.user')).toBe(0);
      // a rate limit name is no on/off switch
      await expect(setSwitch(redis, 'ratelimit.route_grab.user', true)).rejects.toThrow(UnknownSwitchError);
    } finally {
      redis.disconnect();
    }
  });

  it('reads rate limit overrides: positive integers only, per rule (own database)', async () => {
    const redis = await requireRedis(OWN_DB_URL);
    const switches = new Switches(redis, silent, { refreshMs: 50 });
    const [a, b, c] = [`ratelimit.t${uid()}`, `ratelimit.t${uid()}`, `ratelimit.t${uid()}`];
    try {
      // written by hand, as a damaged or hand-edited hash could hold them
      await redis.hset(keys.switches, a, '7', b, 'abc', c, '0');
      await switches.start();
      expect(switches.rateLimitOverride(a.slice('ratelimit.'.length))).toBe(7);
      expect(switches.rateLimitOverride(b.slice('ratelimit.'.length))).toBeUndefined();
      expect(switches.rateLimitOverride(c.slice('ratelimit.'.length))).toBeUndefined();
      await redis.hdel(keys.switches, a);
      await switches.refresh();
      expect(switches.rateLimitOverride(a.slice('ratelimit.'.length))).toBeUndefined();
    } finally {
      switches.stop();
      await redis.hdel(keys.switches, a, b, c);
      redis.disconnect();
    }
  });

  it('keeps the last known values when Redis fails, logs it once, and never throws', async () => {
    const admin = await requireRedis();
    const own = await requireRedis();
    const name = grabPausedFor(`c${uid()}`);
    const lines: Record<string, unknown>[] = [];
    const log = pino(
      { level: 'info' },
      { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) },
    );
    const switches = new Switches(own, log, { refreshMs: 20 });
    try {
      await setSwitch(admin, name, true);
      await switches.start();
      expect(switches.isOn(name)).toBe(true);
      own.disconnect(); // every read from now on fails
      // several failed reads (the timer's and these) resolve, never reject
      for (let i = 0; i < 5; i++) await expect(switches.refresh()).resolves.toBeUndefined();
      expect(switches.isOn(name)).toBe(true);
      const errors = lines.filter((l) => l['msg'] === 'cannot read switches; keeping the last known values');
      expect(errors).toHaveLength(1);
      expect(errors[0]?.['err']).toMatch(/Connection is closed/);
    } finally {
      switches.stop();
      await setSwitch(admin, name, false);
      admin.disconnect();
    }
  });
});

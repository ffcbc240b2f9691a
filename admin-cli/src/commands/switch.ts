/** `redpacket switch list|set`: the degrade switches, read and written in Redis directly. */
import { Command } from 'commander';
import { Redis } from 'ioredis';
import {
  BadSwitchValueError,
  checkSwitchName,
  listSwitches,
  RATE_LIMIT_PREFIX,
  setRateLimitOverride,
  setSwitch,
  UnknownSwitchError,
} from '@redpacket/lib';
import { action, examples } from '../action.js';
import type { CliContext, CliEnv } from '../context.js';
import { CliError, Exit, usageError } from '../errors.js';
import { table } from '../format.js';

/** The URL without its password, for messages. */
function shown(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

/** Runs `fn` on a connection to REDIS_URL, closed afterwards; an unreachable Redis exits 3. */
export async function withRedis<T>(ctx: CliContext, url: string, fn: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    retryStrategy: () => null,
    connectTimeout: ctx.opts.timeout,
  });
  redis.on('error', () => undefined); // the failed command says it
  try {
    await redis.connect();
  } catch (err) {
    redis.disconnect();
    throw new CliError(
      `Redis is not reachable at ${shown(url)} (${(err as Error).message}); set REDIS_URL`,
      Exit.unavailable,
    );
  }
  try {
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

async function list(ctx: CliContext, url: string): Promise<void> {
  const all = await withRedis(ctx, url, listSwitches);
  ctx.print({ switches: all }, () =>
    table(
      ['switch', 'state', 'effect'],
      all.map((s) => [s.name, s.value !== undefined ? String(s.value) : s.on ? 'ON' : 'off', s.description]),
    ),
  );
}

/** `switch set ratelimit.<rule> N|off`: checked against the rules gateway registered in Redis. */
async function setRateLimit(ctx: CliContext, url: string, name: string, value: string): Promise<void> {
  const n = await withRedis(ctx, url, async (redis) => {
    try {
      return await setRateLimitOverride(redis, name, value);
    } catch (err) {
      if (err instanceof UnknownSwitchError || err instanceof BadSwitchValueError) throw usageError(err.message);
      throw err;
    }
  });
  ctx.print(n === undefined ? { name, on: false } : { name, on: true, value: n }, () =>
    n === undefined
      ? `rate limit ${name.slice(RATE_LIMIT_PREFIX.length)} is back to the rules file's (gateway sees it within 2 s)`
      : `rate limit ${name.slice(RATE_LIMIT_PREFIX.length)} is now ${n} requests per unit (gateway sees it within 2 s)`,
  );
}

async function set(ctx: CliContext, url: string, name: string, state: string): Promise<void> {
  if (name.startsWith(RATE_LIMIT_PREFIX)) return setRateLimit(ctx, url, name, state);
  if (state !== 'on' && state !== 'off') throw usageError(`state must be "on" or "off", not "${state}"`);
  try {
    checkSwitchName(name);
  } catch (err) {
    if (err instanceof UnknownSwitchError) throw usageError(err.message);
    throw err;
  }
  const on = state === 'on';
  await withRedis(ctx, url, (redis) => setSwitch(redis, name, on));
  ctx.print({ name, on }, () => `switch ${name} is now ${on ? 'ON' : 'off'} (the services see it within 2 s)`);
}

export function switchCommand(env: CliEnv): Command {
  const url = env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const cmd = new Command('switch').description(
    'degrade switches: pause grabs or gift delivery, disable award queries, change a rate limit; live within 2 s (REDIS_URL)',
  );
  cmd.addCommand(
    examples(
      new Command('list')
        .description('every switch, whether it is on, and what it does')
        .action(action((ctx) => list(ctx, url))),
      ['redpacket switch list', 'redpacket switch list --json'],
    ),
  );
  cmd.addCommand(
    examples(
      new Command('set')
        .argument(
          '<name>',
          'grab.paused, grab.paused:<campaignId>, gift.paused, awards.queries_disabled, spending.paused or ratelimit.<rule>',
        )
        .argument('<state>', 'on or off; for ratelimit.<rule>: requests per unit (1 or more) or off')
        .description("turn a switch on or off, or override a gateway rate limit rule's requests_per_unit")
        .action(action((ctx, name: string, state: string) => set(ctx, url, name, state))),
      [
        'redpacket switch set gift.paused on        # wins keep queueing in RabbitMQ',
        'redpacket switch set grab.paused:Xy3kQ9 on  # grabs on one campaign answer NOT_STARTED',
        'redpacket switch set gift.paused off',
        "redpacket switch set ratelimit.route_grab.user 3   # 3 grabs a minute per user (the rule's unit)",
        "redpacket switch set ratelimit.route_grab.user off # the rules file's limit again",
      ],
    ),
  );
  return cmd;
}

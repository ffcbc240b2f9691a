/** The Lua scripts, registered once per connection; the only place that builds KEYS and ARGV. */
import { keys, poolId, type RedisClient } from '@redpacket/lib';
import type { Result } from 'ioredis';
import type { Verdict } from './eligibility-mirror.js';
import { loadScript, type LoadedScript } from './lua-include.js';

/** Raw reply of grab-6.lua (and take-4.lua): [code, packetId, amountCents, nextBatchAtMs]. */
export type GrabReply = [number, string, string, number];

declare module 'ioredis' {
  interface RedisCommander<Context> {
    rpGrab(
      meta: string,
      stats: string,
      claims: string,
      outbox: string,
      state: string,
      route: string,
      userId: string,
      requestId: string,
      batchPrefix: string,
      campaignId: string,
      openedAtMs: string,
      blocked: '0' | '1',
      riskScore: string,
      pooled: '' | '1',
      traceId: string,
    ): Result<GrabReply, Context>;
    rpTake(
      meta: string,
      stats: string,
      claims: string,
      outbox: string,
      userId: string,
      requestId: string,
      batchPrefix: string,
      campaignId: string,
      traceId: string,
    ): Result<GrabReply, Context>;
    rpRoute(
      route: string,
      stats: string,
      userId: string,
      requestId: string,
      outcome: 'won' | 'sold_out' | 'ended',
      pool: string,
      packetId: string,
      amountCents: string,
    ): Result<number, Context>;
  }
}

/** Command name -> script file; the file name gives the key count. */
const SCRIPT_FILES = { rpGrab: 'grab-6.lua', rpTake: 'take-4.lua', rpRoute: 'route-2.lua' } as const;

let loaded: [name: string, script: LoadedScript][] | undefined;

/**
 * Defines the commands on a client; call once per client before use. The files are read and
 * their includes resolved on the first call (start-up), so a bad include stops the process there.
 */
export function registerScripts(redis: RedisClient): void {
  loaded ??= Object.entries(SCRIPT_FILES).map(([name, file]) => [name, loadScript(file)]);
  for (const [name, script] of loaded) redis.defineCommand(name, script);
}

/**
 * The grab on one pool: `pool` 0 of `pools` 1 is a plain campaign; with sub-pools it is the
 * user's home pool.
 */
export function grabScript(
  redis: RedisClient,
  campaignId: string,
  userId: string,
  requestId: string,
  openedAtMs: number | undefined,
  verdict: Verdict,
  pool = 0,
  pools = 1,
  /** The edge's x-request-id, stored with a win for the relay to pass on; '' when none. */
  traceId = '',
): Promise<GrabReply> {
  const p = poolId(campaignId, pool);
  return redis.rpGrab(
    keys.meta(p),
    keys.stats(p),
    keys.claims(p),
    keys.outbox(p),
    keys.state(p),
    keys.route(p),
    userId,
    requestId,
    keys.batchPrefix(p),
    campaignId,
    openedAtMs === undefined ? '' : String(openedAtMs),
    verdict.blocked ? '1' : '0',
    String(verdict.riskScore),
    pools > 1 ? '1' : '',
    traceId,
  );
}

/** Sub-pools: takes a packet from another pool for a user holding the reservation at home. */
export function takeScript(
  redis: RedisClient,
  campaignId: string,
  pool: number,
  userId: string,
  requestId: string,
  traceId = '',
): Promise<GrabReply> {
  const p = poolId(campaignId, pool);
  return redis.rpTake(
    keys.meta(p),
    keys.stats(p),
    keys.claims(p),
    keys.outbox(p),
    userId,
    requestId,
    keys.batchPrefix(p),
    campaignId,
    traceId,
  );
}

/** Sub-pools: settles the reservation on the home pool. */
export function routeScript(
  redis: RedisClient,
  campaignId: string,
  home: number,
  userId: string,
  requestId: string,
  outcome: 'won' | 'sold_out' | 'ended',
  from?: { pool: number; packetId: string; amountCents: string },
): Promise<number> {
  const p = poolId(campaignId, home);
  return redis.rpRoute(
    keys.route(p),
    keys.stats(p),
    userId,
    requestId,
    outcome,
    String(from?.pool ?? ''),
    from?.packetId ?? '',
    from?.amountCents ?? '',
  );
}

/** The Lua scripts, registered once per connection; the only place that builds KEYS and ARGV. */
import { readFileSync } from 'node:fs';
import { keys, type RedisClient } from '@redpacket/lib';
import type { Result } from 'ioredis';
import type { Verdict } from './eligibility-mirror.js';

/** Raw reply of grab-5.lua: [code, packetId, amountCents, nextBatchAtMs]. */
export type GrabReply = [number, string, string, number];

declare module 'ioredis' {
  interface RedisCommander<Context> {
    rpGrab(
      meta: string,
      stats: string,
      claims: string,
      outbox: string,
      state: string,
      userId: string,
      requestId: string,
      batchPrefix: string,
      campaignId: string,
      openedAtMs: string,
      blocked: '0' | '1',
      riskScore: string,
    ): Result<GrabReply, Context>;
  }
}

const lua = (file: string): string => readFileSync(new URL(`../src/lua/${file}`, import.meta.url), 'utf8');

/** Defines the commands on a client; call once per client before use. */
export function registerScripts(redis: RedisClient): void {
  redis.defineCommand('rpGrab', { numberOfKeys: 5, lua: lua('grab-5.lua') });
}

export function grabScript(
  redis: RedisClient,
  campaignId: string,
  userId: string,
  requestId: string,
  openedAtMs: number | undefined,
  verdict: Verdict,
): Promise<GrabReply> {
  return redis.rpGrab(
    keys.meta(campaignId),
    keys.stats(campaignId),
    keys.claims(campaignId),
    keys.outbox(campaignId),
    keys.state(campaignId),
    userId,
    requestId,
    keys.batchPrefix(campaignId),
    campaignId,
    openedAtMs === undefined ? '' : String(openedAtMs),
    verdict.blocked ? '1' : '0',
    String(verdict.riskScore),
  );
}

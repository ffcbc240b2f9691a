/** The gateway's Lua script, registered once per client; the only place that builds KEYS and ARGV. */
import { readFileSync } from 'node:fs';
import type { RedisClient } from '@redpacket/lib';
import type { Result } from 'ioredis';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    /** take-tokens-n.lua: numKeys, then the keys, then the arguments. */
    rlTakeTokens(numKeys: number, ...keysAndArgs: (string | number)[]): Result<number[], Context>;
  }
}

const lua = (file: string): string => readFileSync(new URL(`../src/lua/${file}`, import.meta.url), 'utf8');

/** Defines the commands on a client; call once per client before use. */
export function registerScripts(redis: RedisClient): void {
  // No numberOfKeys: one decision has as many buckets as the request has limited descriptors.
  redis.defineCommand('rlTakeTokens', { lua: lua('take-tokens-n.lua') });
}

export interface BucketArg {
  key: string;
  capacity: number;
  periodMs: number;
  shadow: boolean;
}

export interface BucketResult {
  /** The bucket lacked the tokens for this request (shadow buckets included). */
  short: boolean;
  remaining: number;
  waitMs: number;
}

/** One call for the whole decision: over (some enforced bucket lacks tokens) and each bucket's state. */
export async function takeTokens(
  redis: RedisClient,
  buckets: readonly BucketArg[],
  hits: number,
): Promise<{ over: boolean; results: BucketResult[] }> {
  const args: (string | number)[] = buckets.map((b) => b.key);
  args.push(hits);
  for (const b of buckets) args.push(b.capacity, b.periodMs, b.shadow ? '1' : '0');
  const reply = await redis.rlTakeTokens(buckets.length, ...args);
  const results = buckets.map((_, i) => ({
    short: reply[3 * i + 1] === 1,
    remaining: reply[3 * i + 2] ?? 0,
    waitMs: reply[3 * i + 3] ?? 0,
  }));
  return { over: reply[0] === 1, results };
}

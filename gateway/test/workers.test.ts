/**
 * gateway's main with WORKERS=2: two processes on one port, both answering ShouldRateLimit, and
 * the per-user limit holds across them because the buckets live in Redis; the primary serves
 * both workers' metrics, summed.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { keys } from '@redpacket/lib';
import {
  deleteKeys,
  exitCodeOf,
  listeningWorkerPids,
  refusal,
  requireRedis,
  testRedisDb,
} from '@redpacket/lib/testing';
import { spawnNode, type Child } from '@redpacket/loadgen';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RateLimitResponse } from '../src/server.js';
import { descriptorsFor, grabHeaders } from './envoy-descriptors.js';
import { rlsClient, shouldRateLimit, type RlsClient } from './rls-client.js';

const run = promisify(execFile);
/** This file's ports (17600-17649 belong to the scale tests). */
const GRPC_PORT = 17610;
const METRICS_PORT = 17611;
/** A Redis database of its own, so the shared global bucket of the shipped rules is ours alone. */
const REDIS_URL = testRedisDb(6);
/** The shipped per-user rule: 10 a minute. */
const USER_LIMIT = 10;

const tag = randomBytes(5).toString('hex');
let child: Child;
let redis: Redis;
const clients: RlsClient[] = [];
let workerPids: number[] = [];

beforeAll(async () => {
  redis = await requireRedis(REDIS_URL);
  child = spawnNode(new URL('../dist/main.js', import.meta.url), [], {
    GRPC_PORT: String(GRPC_PORT),
    METRICS_PORT: String(METRICS_PORT),
    REDIS_URL,
    WORKERS: '2',
    // A decision Redis does not answer within the timeout fails open (allowed): on a loaded test
    // machine 100 ms (the default) is not always enough, and this test is about shared buckets.
    REDIS_TIMEOUT_MS: '2000',
    LOG_LEVEL: 'info',
  });
  workerPids = await listeningWorkerPids(child, 2);
  // A subchannel pool per client: 8 separate connections, which the primary deals out in turn.
  for (let i = 0; i < 8; i++) {
    clients.push(rlsClient(`127.0.0.1:${GRPC_PORT}`, { 'grpc.use_local_subchannel_pool': 1 }));
  }
});

afterAll(async () => {
  for (const c of clients) c.close();
  await child?.stop();
  // Our users' buckets, and the global and per-campaign buckets this run filled in our database.
  if (redis) {
    await deleteKeys(redis, `rl:*${tag}*`);
    await deleteKeys(redis, 'rl:{redpacket}:*global*');
    // the rule list the gateway registers at start (in this database of ours)
    await redis.del(keys.rateLimitRules);
    redis.disconnect();
  }
});

const ask = (client: RlsClient, campaign: string, user: string): Promise<RateLimitResponse> =>
  shouldRateLimit(client, descriptorsFor('grab', { headers: grabHeaders(campaign, user) }));

/** Pids of the processes holding established connections on the gRPC port (ss -p). */
async function serverPids(): Promise<Set<number>> {
  const { stdout } = await run('ss', ['-tnpH', 'state', 'established', `( sport = :${GRPC_PORT} )`]);
  return new Set([...stdout.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1])));
}

it('WORKERS=2: both processes answer, and N calls over the per-user limit give exactly the limit OK', async () => {
  expect(new Set(workerPids).size).toBe(2);
  const campaign = `gwworkers-${tag}`;
  const users = Array.from({ length: 20 }, (_, i) => `u${tag}x${i}`);
  const perUser = 4 * USER_LIMIT;
  // Every user's calls are spread over all 8 connections, so over both processes, all at once.
  const replies = await Promise.all(
    users.flatMap((user) =>
      Array.from({ length: perUser }, (_, k) =>
        ask(clients[k % clients.length]!, campaign, user).then((r) => ({ user, code: r.overall_code })),
      ),
    ),
  );
  // Both worker processes held connections while the calls ran (and still do).
  const pids = await serverPids();
  for (const pid of workerPids) expect(pids.has(pid)).toBe(true);

  for (const user of users) {
    const mine = replies.filter((r) => r.user === user);
    expect(mine).toHaveLength(perUser);
    expect(mine.filter((r) => r.code === 'OK')).toHaveLength(USER_LIMIT);
    expect(mine.filter((r) => r.code === 'OVER_LIMIT')).toHaveLength(perUser - USER_LIMIT);
  }

  // The primary serves the metrics of both workers, summed: every decision is counted once.
  const text = await (await fetch(`http://127.0.0.1:${METRICS_PORT}/metrics`)).text();
  const count = (outcome: string): number => {
    const m = new RegExp(`^rls_decisions_total\\{outcome="${outcome}"\\} (\\d+)`, 'm').exec(text);
    return Number(m?.[1] ?? 0);
  };
  expect(count('ok')).toBe(users.length * USER_LIMIT);
  expect(count('over_limit')).toBe(users.length * (perUser - USER_LIMIT));
  expect(count('fail_open')).toBe(0);

  // SIGHUP reaches the workers (a rules reload), and SIGTERM ends them all with exit code 0.
  child.proc.kill('SIGHUP');
  await child.waitFor(/rate limit rules reloaded/, 10_000);
  const exit = exitCodeOf(child.proc);
  child.proc.kill('SIGTERM');
  expect(await exit).toBe(0);
});

it.each(['0', '65', 'two'])('refuses WORKERS=%s before starting anything, naming the variable', async (workers) => {
  const { line, exitCode } = await refusal(
    spawnNode(new URL('../dist/main.js', import.meta.url), [], { WORKERS: workers, REDIS_URL }),
  );
  expect(line).toContain('WORKERS');
  expect(exitCode).toBe(2);
});

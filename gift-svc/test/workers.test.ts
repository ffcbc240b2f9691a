/**
 * gift-svc's main with WORKERS=2: two consumers on one queue credit every win exactly once, also
 * when one worker is SIGKILLed mid-stream and the primary starts another; reconcile is exact.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { RowDataPacket } from 'mysql2/promise';
import type { Pool } from '@redpacket/db';
import { keys } from '@redpacket/lib';
import {
  exitCodeOf,
  listeningWorkerPids,
  pollUntil,
  refusal,
  requireRedis,
  TEST_AMQP_URL,
  TEST_MYSQL_URL,
  testRedisDb,
  testSigner,
} from '@redpacket/lib/testing';
import { spawnNode, type Child } from '@redpacket/loadgen';
import { reconcileCampaign } from '@redpacket/grab-svc/settle';
import {
  awardCount,
  dropCampaign,
  dropTopology,
  grabMany,
  makeCampaign,
  requireMysql,
  requireTopology,
  testRelay,
} from './harness.js';

const run = promisify(execFile);
/** This file's ports (17600-17649 belong to the scale tests). */
const GRPC_PORT = 17615;
const METRICS_PORT = 17616;
/** A Redis database of the scale tests' own. */
const REDIS_URL = testRedisDb(6);

let redis: Redis;
let relayRedis: Redis;
let pool: Pool;
let child: Child | undefined;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  redis = await requireRedis(REDIS_URL);
  relayRedis = await requireRedis(REDIS_URL);
  pool = await requireMysql();
});

afterAll(async () => {
  await child?.stop();
  for (const c of cleanups.reverse()) await c();
  await pool?.end();
  redis?.disconnect();
  relayRedis?.disconnect();
});

/** Pids in the connection names of the queue's consumers (gift-svc@host/<pid>). */
async function consumerPids(queue: string): Promise<number[]> {
  const { stdout: consumers } = await run('rabbitmqctl', [
    '-q',
    'list_consumers',
    'queue_name',
    'channel_pid',
    '--no-table-headers',
  ]);
  const channels = consumers
    .split('\n')
    .filter((l) => l.split('\t')[0] === queue)
    .map((l) => l.split('\t')[1] ?? '');
  const { stdout: chans } = await run('rabbitmqctl', [
    '-q',
    'list_channels',
    'pid',
    'connection',
    '--no-table-headers',
  ]);
  const conns = chans
    .split('\n')
    .map((l) => l.split('\t'))
    .filter(([pid]) => channels.includes(pid ?? ''))
    .map(([, conn]) => conn);
  const { stdout: names } = await run('rabbitmqctl', [
    '-q',
    'list_connections',
    'pid',
    'client_properties',
    '--no-table-headers',
  ]);
  return names
    .split('\n')
    .filter((l) => conns.includes(l.split('\t')[0]))
    .map((l) => /"connection_name","gift-svc@[^"/]*\/(\d+)"/.exec(l)?.[1])
    .filter((p): p is string => p !== undefined)
    .map(Number);
}

it('WORKERS=2 on one queue: every win credited exactly once, through a worker killed mid-stream', async () => {
  const t = await requireTopology();
  const meta = await makeCampaign(redis, pool, { count: 3000, totalCents: 900_000 });
  cleanups.push(
    () => dropTopology(t),
    () => dropCampaign(redis, pool, meta.id),
  );
  const won = await grabMany(redis, meta.id, 3000);
  expect(won).toBe(3000);

  child = spawnNode(new URL('../dist/main.js', import.meta.url), [], {
    GRPC_PORT: String(GRPC_PORT),
    METRICS_PORT: String(METRICS_PORT),
    ...testSigner().env,
    REDIS_URL,
    MYSQL_URL: TEST_MYSQL_URL,
    AMQP_URL: TEST_AMQP_URL,
    WINS_TOPOLOGY_SUFFIX: t.queue.slice('gift.wins.'.length),
    WORKERS: '2',
    // 600 a second for the instance, 300 for each worker: slow enough to kill one mid-stream.
    GIFT_RATE: '600',
    GIFT_BATCH: '50',
    LOG_LEVEL: 'info',
  });
  const pids = await listeningWorkerPids(child, 2);

  // Both workers consume the one queue.
  await pollUntil('two consumers on the queue', async () => (await consumerPids(t.queue)).length === 2, 20_000, 100);
  expect((await consumerPids(t.queue)).sort()).toEqual([...pids].sort());
  // Only now do the wins start to flow.
  const { stop } = await testRelay(t, [meta.id], { redis: relayRedis });
  cleanups.push(stop);

  await pollUntil('some wins credited', async () => (await awardCount(pool, meta.id)).n >= 600, 30_000, 10);
  process.kill(pids[0]!, 'SIGKILL');
  expect((await awardCount(pool, meta.id)).n).toBeLessThan(won);
  const replaced = await child.waitFor(/"worker":3,"pid":\d+.*worker listening/, 30_000);
  const third = (JSON.parse(replaced) as { pid: number }).pid;
  expect(pids).not.toContain(third);

  await pollUntil('every win credited', async () => (await awardCount(pool, meta.id)).n >= won, 60_000, 50);
  await pollUntil('outbox drained', async () => (await redis.xlen(keys.outbox(meta.id))) === 0, 20_000, 50);
  expect(await awardCount(pool, meta.id)).toEqual({ n: won, distinct: won });
  const rec = await reconcileCampaign(redis, pool, meta.id);
  expect(rec.differences).toEqual([]);
  expect(rec).toMatchObject({ consistent: true, packetsClaimedRedis: won, packetsDeliveredMysql: won });

  // The primary's metrics port answers with the workers' metrics.
  const text = await (await fetch(`http://127.0.0.1:${METRICS_PORT}/metrics`)).text();
  expect(text).toMatch(/^process_cpu_user_seconds_total \d/m);

  const exit = exitCodeOf(child.proc);
  child.proc.kill('SIGTERM');
  expect(await exit).toBe(0);
});

it.each(['0', '65', 'two'])('refuses WORKERS=%s before starting anything, naming the variable', async (workers) => {
  const { line, exitCode } = await refusal(
    spawnNode(new URL('../dist/main.js', import.meta.url), [], { WORKERS: workers, REDIS_URL, ...testSigner().env }),
  );
  expect(line).toContain('WORKERS');
  expect(exitCode).toBe(2);
});

it("GIFT_RATE is the instance's: two workers together credit no faster than it", async () => {
  const t = await requireTopology();
  const meta = await makeCampaign(redis, pool, { count: 1600, totalCents: 500_000 });
  cleanups.push(
    () => dropTopology(t),
    () => dropCampaign(redis, pool, meta.id),
  );
  const won = await grabMany(redis, meta.id, 1600);
  const rated = spawnNode(new URL('../dist/main.js', import.meta.url), [], {
    GRPC_PORT: String(GRPC_PORT + 2),
    ...testSigner().env,
    REDIS_URL,
    MYSQL_URL: TEST_MYSQL_URL,
    AMQP_URL: TEST_AMQP_URL,
    WINS_TOPOLOGY_SUFFIX: t.queue.slice('gift.wins.'.length),
    WORKERS: '2',
    GIFT_RATE: '400',
    LOG_LEVEL: 'info',
  });
  cleanups.push(() => rated.stop());
  for (let n = 1; n <= 2; n++) await rated.waitFor(new RegExp(`"worker":${n},"pid":\\d+.*worker listening`), 30_000);
  const { stop } = await testRelay(t, [meta.id], { redis: relayRedis });
  cleanups.push(stop);
  await pollUntil('every win credited', async () => (await awardCount(pool, meta.id)).n === won, 60_000, 50);
  const [rows] = await pool.query<RowDataPacket[]>(
    'SELECT TIMESTAMPDIFF(MICROSECOND, MIN(credited_at), MAX(credited_at)) AS us FROM awards WHERE campaign_id = ?',
    [meta.id],
  );
  // 1,600 wins at 400 a second take about 4 s (less a tenth of a second of burst per worker);
  // were each worker to take the whole GIFT_RATE, 2 s.
  expect(Number(rows[0]?.['us']) / 1e6).toBeGreaterThan(3.2);
});

/**
 * SIGTERM under load loses no win, against the real Redis, RabbitMQ and MySQL, with the real
 * processes: grab-svc's relay stopped while wins flow (it finishes its batch, awaits the broker's
 * confirms, leaves nothing pending; another relay moves the rest: every win on the queue exactly
 * once), and gift-svc stopped while it credits at a throttled rate (deliveries in flight are acked
 * after their commit or go back to the queue; a new gift-svc finishes; reconcile is exact).
 * Redis database 4 is this file's own, so neither process can touch another test's campaigns.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { credentials } from '@grpc/grpc-js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { Pool } from '@redpacket/db';
import { keys } from '@redpacket/lib';
import {
  bearer,
  call,
  exitCodeOf,
  pollUntil,
  requireRedis,
  TEST_AMQP_URL,
  testSigner,
  TEST_MYSQL_URL,
  testRedisDb,
} from '@redpacket/lib/testing';
import { freePort, spawnNode, type Child } from '@redpacket/loadgen';
import { AdminServiceClient, GrabServiceClient, Outcome, Split } from '@redpacket/proto';
import { connectAmqp, decodeWin } from '@redpacket/wins';
import { closeCampaign } from '@redpacket/grab-svc/campaigns';
import { reconcileCampaign, settleCampaign } from '@redpacket/grab-svc/settle';
import { OutboxRelay } from '@redpacket/grab-svc/relay/outbox-relay';
import type { RowDataPacket } from 'mysql2/promise';
import {
  awardCount,
  dropCampaign,
  dropTopology,
  grabMany,
  makeCampaign,
  queueDepth,
  requireMysql,
  requireTopology,
  silent,
} from './harness.js';

const run = promisify(execFile);
const OWN_DB_URL = testRedisDb(4);
const grabMain = new URL('../../grab-svc/dist/main.js', import.meta.url);
const giftMain = new URL('../dist/main.js', import.meta.url);

let redis: Redis;
let pool: Pool;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  redis = await requireRedis(OWN_DB_URL);
  pool = await requireMysql(4);
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  await pool.end();
  redis.disconnect();
});

/** Every message in the queue, taken off it (acked): the packet ids, in order. */
async function drainQueue(queue: string, expected: number): Promise<string[]> {
  const conn = await connectAmqp(TEST_AMQP_URL, `test-drain-${queue}`);
  try {
    const ch = await conn.createChannel();
    await ch.prefetch(500);
    const ids: string[] = [];
    let done!: () => void;
    const all = new Promise<void>((r) => (done = r));
    const { consumerTag } = await ch.consume(queue, (msg) => {
      if (!msg) return;
      ids.push(decodeWin(msg.content).packetId);
      ch.ack(msg);
      if (ids.length >= expected) done();
    });
    await Promise.race([all, new Promise((r) => setTimeout(r, 20_000))]);
    await ch.cancel(consumerTag);
    // anything beyond `expected` (a duplicate) is still counted
    await new Promise((r) => setTimeout(r, 200));
    await ch.close();
    return ids;
  } finally {
    await conn.close();
  }
}

/** Unacked deliveries of a queue, as the broker counts them. */
async function unacked(queue: string): Promise<number> {
  const { stdout } = await run('rabbitmqctl', [
    '-q',
    'list_queues',
    'name',
    'messages_unacknowledged',
    '--no-table-headers',
  ]);
  const line = stdout.split('\n').find((l) => l.split('\t')[0] === queue);
  return Number(line?.split('\t')[1] ?? 0);
}

it('SIGTERM to grab-svc while wins flow: its relay confirms what it read, and every win reaches the queue once', async () => {
  const t = await requireTopology();
  cleanups.push(() => dropTopology(t));
  const suffix = t.queue.slice('gift.wins.'.length);
  const port = await freePort();
  const child = spawnNode(grabMain, [], {
    GRPC_PORT: String(port),
    // The shared test Redis keeps nothing on disk: best effort, opted into explicitly.
    REDIS_DURABILITY: 'none',
    REDIS_URL: OWN_DB_URL,
    MYSQL_URL: TEST_MYSQL_URL,
    AMQP_URL: TEST_AMQP_URL,
    ...testSigner().env,
    WINS_TOPOLOGY_SUFFIX: suffix,
    RELAY_SCOPE: 'created-here',
    RELAY_CONNECTION_NAME: `test-sigterm-relay-${suffix}`,
    // small batches: many publish/confirm rounds in flight while it is told to stop
    RELAY_BATCH: '25',
    SETTLE_EVERY_MS: '0',
    LOG_LEVEL: 'info',
  });
  cleanups.push(() => child.stop());
  await child.waitFor(/gRPC server listening/);
  const addr = `127.0.0.1:${port}`;
  const admin = new AdminServiceClient(addr, credentials.createInsecure());
  const grab = new GrabServiceClient(addr, credentials.createInsecure());
  const N = 4000;
  const c = await call(
    admin.createCampaign,
    admin,
    {
      name: 'sigterm relay',
      totalCents: 400_000n,
      packetCount: N,
      split: Split.RANDOM,
      batches: 1,
      batchIntervalMs: 0n,
      startsAt: undefined,
      expiresAt: new Date(Date.now() + 600_000),
      ownerId: 'ops',
      eligibility: undefined,
    },
    bearer(await testSigner().sign({ userId: 'ops', role: 'admin' })),
  );
  const id = c.campaignId;
  cleanups.push(() => dropCampaign(redis, pool, id));
  const tokens = await Promise.all(
    Array.from({ length: N }, (_, i) => testSigner().sign({ userId: `sig-${id}-${i}` })),
  );

  // N users grab, 64 calls in flight at a time, until the server stops answering
  let won = 0;
  let refused = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < N) {
      const token = tokens[next++] as string;
      try {
        const r = await call(grab.grab, grab, { campaignId: id, requestId: '' }, bearer(token));
        if (r.outcome === Outcome.WON) won++;
      } catch {
        refused++;
      }
    }
  };
  const load = Promise.all(Array.from({ length: 64 }, worker));
  // wins are being relayed (some already on the queue) and grabs are still coming in: stop now
  await pollUntil('wins on the queue', async () => (await queueDepth(t.queue)) >= 300, 20_000, 10);
  expect(next).toBeLessThan(N);
  child.proc.kill('SIGTERM');
  await load;
  expect(await exitCodeOf(child.proc)).toBe(0);
  admin.close();
  grab.close();

  const wins = await redis.hlen(keys.claims(id));
  expect(wins).toBe(won);
  expect(won).toBeGreaterThan(300);
  expect(refused).toBeGreaterThan(0); // it did stop under load
  const stream = keys.outbox(id);
  // The relay awaited its confirms before exiting: nothing it read is left unconfirmed...
  const pending = (await redis.xpending(stream, 'relay')) as [number];
  expect(pending[0]).toBe(0);
  // ...and what it published is exactly what left the outbox: no loss, no duplicate.
  const left = await redis.xlen(stream);
  expect((await queueDepth(t.queue)) + left).toBe(wins);

  // Another relay (as after a restart) moves the rest.
  const own = await requireRedis(OWN_DB_URL);
  const relay = new OutboxRelay({
    redis: own,
    amqpUrl: TEST_AMQP_URL,
    topology: t,
    connectionName: `test-sigterm-relay2-${suffix}`,
    log: silent,
    campaigns: async () => [id],
    claimIdleMs: 200,
  });
  relay.start();
  try {
    await pollUntil('the outbox drained', async () => (await redis.xlen(stream)) === 0, 20_000, 20);
  } finally {
    await relay.stop();
    own.disconnect();
  }
  // exactly once: as many messages as wins, and they are the wins
  await pollUntil('every win on the queue', async () => (await queueDepth(t.queue)) >= wins, 10_000, 20);
  expect(await queueDepth(t.queue)).toBe(wins);
  const ids = await drainQueue(t.queue, wins);
  expect(ids).toHaveLength(wins);
  const claimed = Object.values(await redis.hgetall(keys.claims(id))).map((v) => v.split('|')[0]);
  expect(new Set(ids)).toEqual(new Set(claimed));
});

it('SIGTERM to gift-svc while it credits at a throttled rate: in-flight wins acked after commit or requeued; a new one finishes exactly', async () => {
  const t = await requireTopology();
  cleanups.push(() => dropTopology(t));
  const suffix = t.queue.slice('gift.wins.'.length);
  const N = 2000;
  const total = 500_000;
  const meta = await makeCampaign(redis, pool, { count: N, totalCents: total });
  const id = meta.id;
  cleanups.push(() => dropCampaign(redis, pool, id));
  expect(await grabMany(redis, id, N)).toBe(N);
  const own = await requireRedis(OWN_DB_URL);
  const relay = new OutboxRelay({
    redis: own,
    amqpUrl: TEST_AMQP_URL,
    topology: t,
    connectionName: `test-sigterm-giftrelay-${suffix}`,
    log: silent,
    campaigns: async () => [id],
  });
  relay.start();
  try {
    await pollUntil('every win queued', async () => (await queueDepth(t.queue)) === N, 20_000, 20);
  } finally {
    await relay.stop();
    own.disconnect();
  }

  const start = (rate: string): Child => {
    const child = spawnNode(giftMain, [], {
      GRPC_PORT: '0',
      ...testSigner().env,
      REDIS_URL: OWN_DB_URL,
      MYSQL_URL: TEST_MYSQL_URL,
      AMQP_URL: TEST_AMQP_URL,
      WINS_TOPOLOGY_SUFFIX: suffix,
      AMQP_CONNECTION_NAME: `test-sigterm-gift-${suffix}`,
      GIFT_RATE: rate,
      GIFT_BATCH: '20',
      LOG_LEVEL: 'info',
    });
    cleanups.push(() => child.stop());
    return child;
  };
  const first = start('400');
  await pollUntil('crediting under way', async () => (await awardCount(pool, id)).n >= 200, 30_000, 10);
  // deliveries it holds and has not acked yet: what a careless stop would lose or double
  await pollUntil('deliveries in flight', async () => (await unacked(t.queue)) > 0, 10_000, 0);
  const t0 = Date.now();
  first.proc.kill('SIGTERM');
  expect(await exitCodeOf(first.proc)).toBe(0);
  expect(Date.now() - t0).toBeLessThan(10_000);
  const credited = (await awardCount(pool, id)).n;
  expect(credited).toBeLessThan(N);
  // Every delivery it held is either in MySQL (acked after the commit) or back in the queue.
  await pollUntil('nothing unacked', async () => (await unacked(t.queue)) === 0, 10_000, 100);
  expect(credited + (await queueDepth(t.queue))).toBe(N);

  const second = start('0');
  await pollUntil('every win credited', async () => (await awardCount(pool, id)).n === N, 60_000, 50);
  second.proc.kill('SIGTERM');
  expect(await exitCodeOf(second.proc)).toBe(0);
  expect(await awardCount(pool, id)).toEqual({ n: N, distinct: N });
  const [dead] = await pool.query<RowDataPacket[]>('SELECT COUNT(*) AS n FROM dead_letters WHERE campaign_id = ?', [
    id,
  ]);
  expect(Number(dead[0]?.['n'])).toBe(0);
  const rec = await reconcileCampaign(redis, pool, id);
  expect(rec.differences).toEqual([]);
  expect(rec).toMatchObject({ consistent: true, packetsClaimedRedis: N, packetsDeliveredMysql: N });
  await closeCampaign(redis, id, 'test over');
  const s = await settleCampaign(redis, pool, id);
  expect(s.packetsAwarded).toBe(N);
  expect(s.amountAwardedCents + s.refundCents).toBe(BigInt(total));
});

/**
 * No answered win lost through a Redis fault (invariant 7), on Redis servers of this test's own:
 * - a single Redis with the shipped AOF settings (appendonly yes, appendfsync always) is killed
 *   with SIGKILL mid-crowd and restarted from its AOF;
 * - on a 6-node Redis Cluster with REDIS_WAIT_REPLICAS=1, the master of the campaign's slot is
 *   killed with SIGKILL mid-crowd and its replica is promoted.
 * A crowd of 3,000 users grabs 2,000 packets through a real grab-svc over gRPC, 250 calls in
 * flight; each client retries a failed call with the same request id until it gets an answer.
 * Then every user ever answered WON is credited in MySQL with that packet and amount, no packet
 * is credited twice, reconcile is exact, and settle gives awarded + refund = total.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import type { Pool } from '@redpacket/db';
import { createLogger, createRedis, keys, startServer, type RedisClient, type RunningServer } from '@redpacket/lib';
import {
  pollUntil,
  startRedisCluster,
  startRedisServer,
  TEST_AMQP_URL,
  testSigner,
  type TestRedisCluster,
  type TestRedisServer,
} from '@redpacket/lib/testing';
import { freePort } from '@redpacket/loadgen';
import { GrabServiceClient, Outcome, type GrabResponse } from '@redpacket/proto';
import type { Topology } from '@redpacket/wins';
import { closeCampaign } from '@redpacket/grab-svc/campaigns';
import { Durability, type DurabilityPolicy } from '@redpacket/grab-svc/durability';
import { EligibilityMirror } from '@redpacket/grab-svc/eligibility-mirror';
import { OutboxRelay } from '@redpacket/grab-svc/relay/outbox-relay';
import { ReplicaAck } from '@redpacket/grab-svc/replica-ack';
import { registerScripts } from '@redpacket/grab-svc/scripts';
import { createGrabServer } from '@redpacket/grab-svc';
import { reconcileCampaign, settleCampaign } from '@redpacket/grab-svc/settle';
import type { RowDataPacket } from 'mysql2/promise';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { GiftConsumer } from '../src/consumer.js';
import {
  dropCampaign,
  dropTopology,
  ledgerProblems,
  makeCampaign,
  requireMysql,
  requireTopology,
  testGift,
  uid,
} from './harness.js';

const USERS = 3000;
const PACKETS = 2000;
const IN_FLIGHT = 250;
const TOTAL_CENTS = 500_000;
/** The crowd gives up (and the test fails) after this long. */
const CROWD_DEADLINE_MS = 60_000;

const log = createLogger('redis-faults-test', 'silent');
/** The client, with its connection errors (expected here: the server is killed) not printed. */
const quiet = (r: RedisClient): RedisClient => r.on('error', () => undefined);
type Shards = [number, number, [string, number, ...unknown[]], ...unknown[]][];
let pool: Pool;

beforeAll(async () => {
  pool = await requireMysql();
});
afterAll(async () => {
  await pool.end();
});

/** A grab-svc, its relay and a gift consumer, all on `redis`, with `policy`. */
interface Mesh {
  grab: GrabServiceClient;
  gift: GiftConsumer;
  stop(): Promise<void>;
}

async function startMesh(
  connect: () => RedisClient,
  t: Topology,
  campaignId: string,
  policy: DurabilityPolicy,
): Promise<Mesh> {
  const redis = connect();
  registerScripts(redis);
  const conns: RedisClient[] = [redis];
  const durability = (): Durability => {
    const ackRedis = policy === 'replicas' ? connect() : undefined;
    if (ackRedis) conns.push(ackRedis);
    return new Durability({
      policy,
      redis,
      replicaAck: ackRedis ? new ReplicaAck({ redis: ackRedis, replicas: 1, timeoutMs: 500, log }) : undefined,
      log,
      checkEveryMs: 100,
    });
  };
  const grabDurability = durability();
  const relayDurability = durability();
  await grabDurability.start();
  await relayDurability.start();
  const eligibility = new EligibilityMirror(redis, log);
  await eligibility.start();
  const server: RunningServer = await startServer({
    services: createGrabServer({
      redis,
      eligibility,
      tokens: testSigner().verifier(),
      log,
      durability: grabDurability,
    }),
    host: '127.0.0.1',
    port: 0,
    log,
  });
  const relayRedis = connect();
  conns.push(relayRedis);
  const relay = new OutboxRelay({
    redis: relayRedis,
    amqpUrl: TEST_AMQP_URL,
    topology: t,
    connectionName: `test-relay-${t.queue}`,
    log,
    campaigns: async () => [campaignId],
    batchSize: 200,
    maxBackoffMs: 300,
    durable: (p) => relayDurability.confirm([p]),
  });
  relay.start();
  const gift = await testGift(t, pool);
  const grab = new GrabServiceClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
  return {
    grab,
    gift,
    async stop() {
      grab.close();
      await relay.stop();
      await gift.stop();
      await server.shutdown();
      eligibility.stop();
      grabDurability.stop();
      relayDurability.stop();
      for (const c of conns) c.disconnect();
    },
  };
}

function grabOnce(
  client: GrabServiceClient,
  token: string,
  campaignId: string,
  requestId: string,
): Promise<GrabResponse> {
  const md = new Metadata();
  md.set('authorization', `Bearer ${token}`);
  return new Promise((resolve, reject) =>
    client.grab({ campaignId, requestId }, md, { deadline: Date.now() + 3000 }, (err, res) =>
      err ? reject(err) : resolve(res),
    ),
  );
}

interface CrowdResult {
  answers: Map<string, GrabResponse>;
  /** Failed calls retried, by gRPC code. */
  retries: Map<number, number>;
}

/**
 * USERS users, IN_FLIGHT at a time; each retries with its request id until answered. `onAnswer`
 * sees the running count of answers (the fault is injected from there).
 */
async function crowd(
  client: GrabServiceClient,
  campaignId: string,
  run: string,
  onAnswer: (answered: number) => void,
): Promise<CrowdResult> {
  const answers = new Map<string, GrabResponse>();
  const retries = new Map<number, number>();
  const deadline = Date.now() + CROWD_DEADLINE_MS;
  let next = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      for (let i = next++; i < USERS; i = next++) {
        const user = `${run}-u${i}`;
        const token = await testSigner().sign({ userId: user });
        for (;;) {
          try {
            answers.set(user, await grabOnce(client, token, campaignId, `req-${user}`));
            onAnswer(answers.size);
            break;
          } catch (err) {
            const code = (err as ServiceError).code;
            retries.set(code, (retries.get(code) ?? 0) + 1);
            if (Date.now() > deadline)
              throw new Error(
                `${user} got no answer within ${CROWD_DEADLINE_MS} ms; last: ${(err as ServiceError).details}`,
                { cause: err },
              );
            await new Promise((r) => setTimeout(r, 50));
          }
        }
      }
    }),
  );
  return { answers, retries };
}

/** Every check of invariant 7 once the crowd is done and its wins delivered. */
async function checkNoWinLost(redis: RedisClient, mesh: Mesh, campaignId: string, result: CrowdResult): Promise<void> {
  const won = [...result.answers].filter(([, r]) => r.outcome === Outcome.WON);
  for (const [, r] of result.answers) expect([Outcome.WON, Outcome.SOLD_OUT]).toContain(r.outcome);
  // No packet answered to two users.
  expect(new Set(won.map(([, r]) => r.packetId)).size).toBe(won.length);
  expect(won.length).toBeLessThanOrEqual(PACKETS);

  await pollUntil(
    'every claim credited in MySQL',
    async () => {
      const [[row], stats] = await Promise.all([
        pool.query<RowDataPacket[]>('SELECT COUNT(*) AS n FROM awards WHERE campaign_id = ?', [campaignId]),
        redis.hget(keys.stats(campaignId), 'claimed'),
      ]);
      return Number(row[0]?.['n']) === Number(stats) && Number(stats) >= won.length;
    },
    60_000,
    100,
  );
  const [rows] = await pool.query<RowDataPacket[]>(
    'SELECT packet_id, user_id, amount_cents FROM awards WHERE campaign_id = ?',
    [campaignId],
  );
  const byUser = new Map(rows.map((r) => [String(r['user_id']), r]));
  const lost = won.filter(([user, r]) => {
    const a = byUser.get(user);
    return !a || String(a['packet_id']) !== r.packetId || BigInt(String(a['amount_cents'])) !== r.amountCents;
  });
  expect(lost.map(([u]) => u)).toEqual([]);
  expect(new Set(rows.map((r) => String(r['packet_id']))).size).toBe(rows.length);

  // A retry of a win, long after, returns the original result.
  for (const [user, r] of won.slice(0, 20)) {
    const token = await testSigner().sign({ userId: user });
    const again = await grabOnce(mesh.grab, token, campaignId, `req-${user}`);
    expect(again).toMatchObject({ outcome: Outcome.WON, packetId: r.packetId, amountCents: r.amountCents });
  }

  const rec = await reconcileCampaign(redis, pool, campaignId);
  expect(rec.differences).toEqual([]);
  expect(rec.consistent).toBe(true);
  expect(rec.packetsClaimedRedis + rec.packetsRemainingRedis).toBe(PACKETS);
  await closeCampaign(redis, campaignId, 'fault test done');
  const s = await settleCampaign(redis, pool, campaignId);
  expect(s.amountAwardedCents + s.refundCents).toBe(BigInt(TOTAL_CENTS));
  expect(s.packetsAwarded).toBe(rows.length);
  expect(await ledgerProblems(pool, campaignId)).toEqual([]);
}

it('a single Redis with AOF (appendfsync always) killed with SIGKILL mid-crowd and restarted loses no answered win', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rp-aof-'));
  const port = await freePort();
  let server: TestRedisServer = await startRedisServer(port, { appendfsync: 'always', dir });
  const connect = (): RedisClient => quiet(createRedis({ url: server.url, autoPipelining: true }));
  const redis = connect();
  const t = await requireTopology();
  const meta = await makeCampaign(redis, pool, { count: PACKETS, totalCents: TOTAL_CENTS });
  const mesh = await startMesh(connect, t, meta.id, 'aof');
  try {
    let killed: Promise<void> | undefined;
    let answeredAtRestart = 0;
    let answered = 0;
    const pidBefore = server.process.pid;
    const result = await crowd(mesh.grab, meta.id, uid(), (n) => {
      answered = n;
      if (n < 600 || killed) return;
      killed = (async () => {
        await server.stop(); // SIGKILL: no shutdown, no final fsync of its own
        await new Promise((r) => setTimeout(r, 300));
        server = await startRedisServer(port, { appendfsync: 'always', dir });
        answeredAtRestart = answered;
      })();
    });
    await killed;
    // The kill landed mid-crowd: a new process, loaded from the AOF, answered most of the crowd.
    expect(server.process.pid).not.toBe(pidBefore);
    expect(answeredAtRestart).toBeGreaterThanOrEqual(600);
    expect(answeredAtRestart).toBeLessThan(USERS - 500);
    await checkNoWinLost(redis, mesh, meta.id, result);
  } finally {
    await mesh.stop();
    await dropCampaign(redis, pool, meta.id);
    redis.disconnect();
    await dropTopology(t);
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

let cluster: TestRedisCluster | undefined;
afterAll(async () => {
  await cluster?.stop();
});

it(
  'a Redis Cluster master killed with SIGKILL mid-crowd, its replica promoted (REDIS_WAIT_REPLICAS=1), loses no answered win',
  {
    timeout: 300_000,
  },
  async () => {
    cluster = await startRedisCluster();
    const nodes = cluster.nodes;
    const connect = (): RedisClient => quiet(createRedis({ url: '', clusterNodes: nodes, autoPipelining: true }));
    const redis = connect();
    await pollUntil('the cluster client', () => redis.status === 'ready', 10_000);
    const t = await requireTopology();
    const meta = await makeCampaign(redis, pool, { count: PACKETS, totalCents: TOTAL_CENTS });
    const mesh = await startMesh(connect, t, meta.id, 'replicas');
    // The master of the campaign's slot, by the pid it reports.
    const slot = Number(await redis.cluster('KEYSLOT', keys.meta(meta.id)));
    const shards = (await redis.cluster('SLOTS')) as unknown as Shards;
    const masterPort = shards.find(([from, to]) => slot >= from && slot <= to)?.[2][1];
    expect(masterPort).toBeDefined();
    expect(cluster.ports).toContain(masterPort);
    const c = cluster;
    const masterOfSlot = async (): Promise<number | undefined> => {
      const now = (await c.node(c.ports.find((p) => p !== masterPort)!).cluster('SLOTS')) as unknown as Shards;
      return now.find(([from, to]) => slot >= from && slot <= to)?.[2][1];
    };
    try {
      let failover: Promise<number | undefined> | undefined;
      let answeredAtFailover = 0;
      let answered = 0;
      const result = await crowd(mesh.grab, meta.id, uid(), (n) => {
        answered = n;
        if (n < 600 || failover) return;
        failover = (async () => {
          await c.kill(masterPort!);
          // The replica is promoted (cluster-node-timeout 5 s); then the dead master comes back
          // and rejoins as its replica, so a WAIT 1 can be acknowledged again.
          const promoted = await pollUntil(
            'a replica promoted for the slot',
            async () => {
              const m = await masterOfSlot();
              return m !== undefined && m !== masterPort ? m : undefined;
            },
            30_000,
            100,
          );
          answeredAtFailover = answered;
          await c.restart(masterPort!);
          return promoted;
        })();
      });
      const promoted = await failover;
      expect(promoted).toBeDefined();
      expect(promoted).not.toBe(masterPort);
      // The failover landed mid-crowd, and no win was answered while the slot had no replica.
      expect(answeredAtFailover).toBeLessThan(USERS);
      expect(result.retries.get(status.UNAVAILABLE) ?? 0).toBeGreaterThan(0);
      await checkNoWinLost(redis, mesh, meta.id, result);
    } finally {
      await mesh.stop();
      await dropCampaign(redis, pool, meta.id).catch(() => undefined);
      redis.disconnect();
      await dropTopology(t);
    }
  },
);

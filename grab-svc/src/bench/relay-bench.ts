/**
 * `npm run bench:relay`: the outbox relay's wins/s against raw amqplib batched-confirm publishing
 * of the same messages, in the same run, on this machine. Figures, not a test: noisy on 2 shared
 * cores. Env: REDIS_URL, AMQP_URL, BENCH_WINS (default 20000), RELAY_BATCH (default 500).
 */
import { randomBytes } from 'node:crypto';
import { createLogger, createRedis, keys } from '@redpacket/lib';
import { Split } from '@redpacket/proto';
import {
  assertTopology,
  connectAmqp,
  deleteTopology,
  encodeWin,
  topologyWithSuffix,
  WIN_CONTENT_TYPE,
} from '@redpacket/wins';
import { z } from 'zod';
import { validateCreate, writeCampaign } from '../campaigns.js';
import { OutboxRelay } from '../relay/outbox-relay.js';
import { grabScript, registerScripts } from '../scripts.js';

const env = z
  .object({
    REDIS_URL: z.string().default('redis://127.0.0.1:6379'),
    AMQP_URL: z.string().default('amqp://guest:guest@127.0.0.1:5672'),
    BENCH_WINS: z.coerce.number().int().min(100).default(20_000),
    RELAY_BATCH: z.coerce.number().int().min(1).default(500),
  })
  .parse(process.env);

const log = createLogger('relay-bench', 'warn');
const redis = createRedis({ url: env.REDIS_URL });
registerScripts(redis);
const n = env.BENCH_WINS;
const tag = randomBytes(4).toString('hex');
const topology = topologyWithSuffix(`bench-${tag}`);
const now = Date.now();
const meta = {
  ...validateCreate(
    {
      name: 'relay bench',
      totalCents: BigInt(n * 100),
      packetCount: n,
      split: Split.EQUAL,
      batches: 1,
      batchIntervalMs: 0n,
      startsAt: new Date(now - 1000),
      expiresAt: new Date(now + 600_000),
      ownerId: 'bench',
      eligibility: undefined,
    },
    now,
  ),
  id: `bench-relay-${tag}`,
};

const rate = (count: number, ms: number): number => Math.round((count * 1000) / ms);

async function main(): Promise<void> {
  const setupConn = await connectAmqp(env.AMQP_URL, `bench-setup-${tag}`);
  const setup = await setupConn.createChannel();
  await assertTopology(setup, topology);
  try {
    // The wins, made by the real grab script (so the outbox holds real entries).
    await writeCampaign(redis, meta);
    for (let i = 0; i < n; i += 1000) {
      await Promise.all(
        Array.from({ length: Math.min(1000, n - i) }, (_, j) =>
          grabScript(redis, meta.id, `u${i + j}`, `r${i + j}`, undefined),
        ),
      );
    }
    const entries = await redis.xrange(keys.outbox(meta.id), '-', '+', 'COUNT', 1);
    const sample = encodeWin({
      campaignId: meta.id,
      packetId: 'AAAAAAAAAAAAAAAA',
      userId: 'u12345',
      amountCents: 100n,
      requestId: 'r12345',
      wonAtMs: BigInt(now),
      streamId: entries[0]?.[0] ?? '0-0',
    });

    // Baseline: raw publishing with batched confirms, same size and batch.
    const rawConn = await connectAmqp(env.AMQP_URL, `bench-raw-${tag}`);
    const raw = await rawConn.createConfirmChannel();
    const rawStart = performance.now();
    for (let i = 0; i < n; i += env.RELAY_BATCH) {
      for (let j = i; j < Math.min(n, i + env.RELAY_BATCH); j++) {
        raw.publish(topology.exchange, meta.id, sample, {
          persistent: true,
          mandatory: true,
          messageId: String(j),
          contentType: WIN_CONTENT_TYPE,
        });
      }
      await raw.waitForConfirms();
    }
    const rawMs = performance.now() - rawStart;
    await rawConn.close();
    await setup.purgeQueue(topology.queue);

    // The relay: from the first read to an empty outbox (every entry confirmed, XACKed, XDELed).
    const relayRedis = createRedis({ url: env.REDIS_URL });
    const relay = new OutboxRelay({
      redis: relayRedis,
      amqpUrl: env.AMQP_URL,
      topology,
      connectionName: `bench-relay-${tag}`,
      log,
      campaigns: async () => [meta.id],
      batchSize: env.RELAY_BATCH,
      idleMs: 5,
    });
    const relayStart = performance.now();
    relay.start();
    while ((await redis.xlen(keys.outbox(meta.id))) > 0) await new Promise((r) => setTimeout(r, 5));
    const relayMs = performance.now() - relayStart;
    await relay.stop();
    relayRedis.disconnect();
    const depth = (await setup.checkQueue(topology.queue)).messageCount;

    const rawRate = rate(n, rawMs);
    const relayRate = rate(n, relayMs);
    console.log(`wins: ${n}, batch: ${env.RELAY_BATCH}, queued by the relay: ${depth}`);
    console.log(`raw amqplib batched-confirm publish: ${rawRate} msg/s (${Math.round(rawMs)} ms)`);
    console.log(
      `relay (XREADGROUP -> publish -> confirm -> XACK+XDEL): ${relayRate} wins/s (${Math.round(relayMs)} ms)`,
    );
    console.log(`relay / raw: ${(relayRate / rawRate).toFixed(2)} (goal >= 0.7)`);
  } finally {
    await deleteTopology(setup, topology).catch(() => undefined);
    await setupConn.close();
    const ks = [keys.meta, keys.stats, keys.claims, keys.outbox, keys.state].map((k) => k(meta.id));
    await redis.del(...ks, keys.batch(meta.id, 0));
    await redis.zrem(keys.campaigns, meta.id);
    redis.disconnect();
  }
}

await main();

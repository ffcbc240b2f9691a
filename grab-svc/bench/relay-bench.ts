/**
 * `npm run bench:relay`: the outbox relay's wins/s against raw amqplib batched-confirm publishing
 * of the same number of messages, alternating, 3 rounds, medians. Figures, not a test: noisy on
 * 2 shared cores. Env: REDIS_URL, AMQP_URL, BENCH_WINS (default 20000), RELAY_BATCH (500).
 */
import { randomBytes } from 'node:crypto';
import { loadAverageLine } from '@redpacket/loadgen';
import { createLogger, createRedis, keys } from '@redpacket/lib';
import {
  DEFAULT_AMQP_URL,
  assertTopology,
  connectAmqp,
  deleteTopology,
  encodeWin,
  topologyWithSuffix,
  WIN_CONTENT_TYPE,
} from '@redpacket/wins';
import { z } from 'zod';
import { writeOpenCampaign, type CampaignMeta } from '@redpacket/grab-svc/campaigns';
import { OutboxRelay } from '@redpacket/grab-svc/relay/outbox-relay';
import { ELIGIBLE } from '@redpacket/grab-svc/eligibility-mirror';
import { grabScript, registerScripts } from '@redpacket/grab-svc/scripts';

const env = z
  .object({
    REDIS_URL: z.string().default('redis://127.0.0.1:6379'),
    AMQP_URL: z.string().default(DEFAULT_AMQP_URL),
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
const campaigns: string[] = [];

/** A campaign of n packets, all won by the real grab script: its outbox holds n real entries. */
async function wonCampaign(round: number): Promise<CampaignMeta> {
  const id = `bench-relay-${tag}-${round}`;
  campaigns.push(id);
  const meta = await writeOpenCampaign(redis, { id, count: n });
  for (let i = 0; i < n; i += 1000) {
    await Promise.all(
      Array.from({ length: Math.min(1000, n - i) }, (_, j) =>
        grabScript(redis, meta.id, `u${i + j}`, `r${i + j}`, undefined, ELIGIBLE),
      ),
    );
  }
  return meta;
}

/** Raw amqplib: connect, then n messages of the relay's size, RELAY_BATCH per waitForConfirms. Returns msg/s. */
async function rawPublish(campaignId: string): Promise<number> {
  const body = encodeWin({
    campaignId,
    packetId: 'AAAAAAAAAAAAAAAA',
    userId: 'u12345',
    amountCents: 100n,
    requestId: 'r12345',
    wonAtMs: BigInt(Date.now()),
    streamId: '1700000000000-0',
    // a UUID, as Envoy's x-request-id: the size the relay's messages have
    traceId: '0b6f3c1e-8f2d-4c52-9a57-3c1d2e4f5a6b',
  });
  // Connecting is inside the timing on both sides: the relay's figure includes its own.
  const start = performance.now();
  const conn = await connectAmqp(env.AMQP_URL, `bench-raw-${tag}`);
  const ch = await conn.createConfirmChannel();
  for (let i = 0; i < n; i += env.RELAY_BATCH) {
    for (let j = i; j < Math.min(n, i + env.RELAY_BATCH); j++) {
      ch.publish(topology.exchange, campaignId, body, {
        persistent: true,
        mandatory: true,
        messageId: String(j),
        contentType: WIN_CONTENT_TYPE,
      });
    }
    await ch.waitForConfirms();
  }
  const ms = performance.now() - start;
  await conn.close();
  return (n * 1000) / ms;
}

/** The relay, from its start to an empty outbox (every entry confirmed, XACKed, XDELed). Returns wins/s. */
async function relayRun(campaignId: string): Promise<number> {
  const relayRedis = createRedis({ url: env.REDIS_URL });
  const relay = new OutboxRelay({
    redis: relayRedis,
    amqpUrl: env.AMQP_URL,
    topology,
    connectionName: `bench-relay-${tag}`,
    log,
    campaigns: async () => [campaignId],
    batchSize: env.RELAY_BATCH,
    idleMs: 5,
  });
  const start = performance.now();
  relay.start();
  while ((await redis.xlen(keys.outbox(campaignId))) > 0) await new Promise((r) => setTimeout(r, 5));
  const ms = performance.now() - start;
  await relay.stop();
  relayRedis.disconnect();
  return (n * 1000) / ms;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const fmt = (xs: number[]): string => xs.map((x) => Math.round(x)).join(', ');

const setupConn = await connectAmqp(env.AMQP_URL, `bench-setup-${tag}`);
const setup = await setupConn.createChannel();

/** Removes every key and queue this run made; also on Ctrl-C and when stdout goes away. */
async function cleanup(): Promise<void> {
  await deleteTopology(setup, topology).catch(() => undefined);
  await setupConn.close().catch(() => undefined);
  for (const id of campaigns) {
    await redis.del(
      ...[keys.meta, keys.stats, keys.claims, keys.outbox, keys.state].map((k) => k(id)),
      keys.batch(id, 0),
    );
    await redis.zrem(keys.campaigns, id);
  }
  redis.disconnect();
}

process.stdout.on('error', () => undefined);
process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));
const startLoad = loadAverageLine();
try {
  await assertTopology(setup, topology);
  const raws: number[] = [];
  const relays: number[] = [];
  for (let round = 0; round < 3; round++) {
    const meta = await wonCampaign(round);
    raws.push(await rawPublish(meta.id));
    await setup.purgeQueue(topology.queue);
    relays.push(await relayRun(meta.id));
    await setup.purgeQueue(topology.queue);
  }
  console.log(`wins: ${n} a round, batch: ${env.RELAY_BATCH}, 3 rounds (medians; every round in brackets)`);
  console.log(`raw amqplib batched-confirm publish: ${Math.round(median(raws))} msg/s [${fmt(raws)}]`);
  console.log(
    `relay (XREADGROUP -> publish -> confirm -> XACK+XDEL): ${Math.round(median(relays))} wins/s [${fmt(relays)}]`,
  );
  console.log(`relay / raw: ${(median(relays) / median(raws)).toFixed(2)} (goal >= 0.7)`);
  console.log(`${startLoad} at the start, ${loadAverageLine()} at the end`);
} finally {
  await cleanup();
}

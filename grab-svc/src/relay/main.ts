/** The outbox relay on its own (`node grab-svc/dist/relay/main.js`), for when grab-svc runs without it. */
import { createLogger, createRedis, onShutdownSignal, serveMetrics } from '@redpacket/lib';
import { DEFAULT_TOPOLOGY, topologyWithSuffix } from '@redpacket/wins';
import { z } from 'zod';
import { OutboxRelay } from './outbox-relay.js';
import { RelayEnv } from './relay-env.js';

const Env = RelayEnv.extend({
  REDIS_URL: z.string().url().default('redis://127.0.0.1:6379'),
  REDIS_CLUSTER_NODES: z.string().optional(),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  /** Comma-separated campaign ids to relay; empty = every unsettled campaign. */
  RELAY_CAMPAIGNS: z.string().default(''),
  /** Prometheus text at http://0.0.0.0:METRICS_PORT/metrics; 0 (the default) = off. */
  METRICS_PORT: z.coerce.number().int().min(0).max(65535).default(0),
});
const parsed = Env.safeParse(process.env);
if (!parsed.success) {
  for (const issue of parsed.error.issues)
    console.error(`relay: bad environment variable ${issue.path.join('.')}: ${issue.message}`);
  process.exit(2);
}
const env = parsed.data;
const log = createLogger('relay', env.LOG_LEVEL);
const redis = createRedis({ url: env.REDIS_URL, clusterNodes: env.REDIS_CLUSTER_NODES });
redis.on('error', (err) => log.warn({ err: err.message }, 'redis error'));
const only = env.RELAY_CAMPAIGNS.split(',').filter(Boolean);
const relay = new OutboxRelay({
  redis,
  amqpUrl: env.AMQP_URL,
  topology: env.WINS_TOPOLOGY_SUFFIX ? topologyWithSuffix(env.WINS_TOPOLOGY_SUFFIX) : DEFAULT_TOPOLOGY,
  connectionName: env.RELAY_CONNECTION_NAME,
  log,
  batchSize: env.RELAY_BATCH,
  claimIdleMs: env.RELAY_CLAIM_IDLE_MS,
  campaigns: only.length ? async () => only : undefined,
});
relay.start();
log.info({ consumer: relay.consumer }, 'relay started');
const metrics = env.METRICS_PORT > 0 ? await serveMetrics(env.METRICS_PORT) : undefined;

onShutdownSignal(log, async () => {
  await metrics?.close();
  await relay.stop();
  await redis.quit();
});

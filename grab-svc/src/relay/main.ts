/** The outbox relay on its own (`node grab-svc/dist/relay/main.js`), for when grab-svc runs without it. */
import { BaseEnv, createLogger, createRedis, onShutdownSignal, parseEnv, serveMetrics } from '@redpacket/lib';
import { DEFAULT_TOPOLOGY, topologyWithSuffix } from '@redpacket/wins';
import { z } from 'zod';
import { OutboxRelay } from './outbox-relay.js';
import { RelayEnv } from './relay-env.js';

const Env = BaseEnv.extend({
  ...RelayEnv.shape,
  /** Comma-separated campaign ids to relay; empty = every unsettled campaign. */
  RELAY_CAMPAIGNS: z.string().default(''),
});
const env = parseEnv('relay', Env, process.env);
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

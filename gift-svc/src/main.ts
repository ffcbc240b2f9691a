/** gift-svc entry point: migrates, consumes wins into MySQL, serves GiftService, stops on SIGTERM. */
import { hostname } from 'node:os';
import {
  BaseEnv,
  createLogger,
  createRedis,
  grpcPort,
  IdentityEnv,
  onShutdownSignal,
  parseEnv,
  startServer,
  superviseWorkers,
  Switches,
  WorkersEnv,
  requireKeyMaterial,
  verifierFromEnv,
  serveMetrics,
  topologySuffix,
  urlVar,
  readTlsFiles,
  tlsFilesFromEnv,
} from '@redpacket/lib';
import { createPool, DEFAULT_MYSQL_URL, migrate } from '@redpacket/db';
import { DEFAULT_AMQP_URL, DEFAULT_TOPOLOGY, topologyWithSuffix } from '@redpacket/wins';
import { z } from 'zod';
import { GiftConsumer } from './consumer.js';
import { createGiftServer } from './server.js';

const Env = BaseEnv.extend({
  GRPC_PORT: grpcPort(50053),
  MYSQL_URL: urlVar(DEFAULT_MYSQL_URL),
  AMQP_URL: urlVar(DEFAULT_AMQP_URL),
  ...IdentityEnv,
  /** Wins credited per second by this instance (all its workers together); 0 = unlimited. */
  GIFT_RATE: z.coerce.number().min(0).default(0),
  GIFT_BATCH: z.coerce.number().int().min(1).max(5000).default(500),
  /** Batches written at once, each in its own transaction and pool connection. */
  GIFT_WRITERS: z.coerce.number().int().min(1).max(64).default(4),
  GIFT_MAX_ATTEMPTS: z.coerce.number().int().min(1).default(5),
  MYSQL_POOL: z.coerce.number().int().min(1).default(10),
  WINS_TOPOLOGY_SUFFIX: topologySuffix(),
  AMQP_CONNECTION_NAME: z.string().default(`gift-svc@${hostname()}/${process.pid}`),
  /** Processes (node:cluster) sharing the port, each a consumer on the same queue. */
  WORKERS: WorkersEnv,
}).superRefine(requireKeyMaterial('JWT_JWKS_FILE', 'JWT_JWKS_URL'));

const env = parseEnv('gift-svc', Env, process.env);
const log = createLogger('gift-svc', env.LOG_LEVEL);
// The primary of WORKERS > 1 only supervises (and serves the summed metrics): it never gets past
// this line.
const role = await superviseWorkers(env.WORKERS, log, { metricsPort: env.METRICS_PORT });

await migrate(env.MYSQL_URL, (m) => log.info(m));
const pool = createPool(env.MYSQL_URL, env.MYSQL_POOL);
const redis = createRedis({ url: env.REDIS_URL, clusterNodes: env.REDIS_CLUSTER_NODES });
redis.on('error', (err) => log.warn({ err: err.message }, 'redis error'));
const switches = new Switches(redis, log);
await switches.start();

const consumer = new GiftConsumer({
  pool,
  amqpUrl: env.AMQP_URL,
  topology: env.WINS_TOPOLOGY_SUFFIX ? topologyWithSuffix(env.WINS_TOPOLOGY_SUFFIX) : DEFAULT_TOPOLOGY,
  connectionName: env.AMQP_CONNECTION_NAME,
  log,
  // GIFT_RATE is the instance's: each of its workers takes an equal share.
  rate: env.GIFT_RATE / env.WORKERS,
  batchSize: env.GIFT_BATCH,
  writers: env.GIFT_WRITERS,
  maxAttempts: env.GIFT_MAX_ATTEMPTS,
  paused: () => switches.isOn('gift.paused'),
});
// Not awaited: the award queries are served even while RabbitMQ is unreachable.
consumer.start().catch((err: Error) => log.error({ err: err.message }, 'consumer stopped'));

const services = createGiftServer({
  pool,
  redis,
  tokens: verifierFromEnv(env, log),
  log,
  switches,
});
// SERVING only while both answer: MySQL (the queries, the crediting) and RabbitMQ (the consumer's
// connection and channel are open; while they are not, it reconnects with back-off)
const running = await startServer({
  services,
  port: env.GRPC_PORT,
  log,
  tls: readTlsFiles(tlsFilesFromEnv(env)),
  ready: async () => consumer.connected && (await pool.query('SELECT 1')).length > 0,
});
const metrics = role.metricsPort > 0 ? await serveMetrics(role.metricsPort) : undefined;

onShutdownSignal(log, async () => {
  await running.shutdown();
  await metrics?.close();
  await consumer.stop();
  switches.stop();
  await pool.end();
  await redis.quit();
});

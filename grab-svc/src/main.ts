/** grab-svc entry point: reads the environment, connects, serves, and shuts down on SIGTERM. */
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
  urlVar,
  type RedisClient,
  readTlsFiles,
  tlsFilesFromEnv,
} from '@redpacket/lib';
import { createPool, DEFAULT_MYSQL_URL, migrate } from '@redpacket/db';
import { DEFAULT_TOPOLOGY, topologyWithSuffix } from '@redpacket/wins';
import { z } from 'zod';
import { EligibilityMirror } from './eligibility-mirror.js';
import { OutboxRelay } from './relay/outbox-relay.js';
import { RelayEnv } from './relay/relay-env.js';
import { ReplicaAck } from './replica-ack.js';
import { DEFAULT_AOF_CHECK_MS, DEFAULT_DURABILITY, Durability, DURABILITY_POLICIES } from './durability.js';
import { registerScripts } from './scripts.js';
import { winsQueueDepth } from './restore.js';
import { createGrabServer } from './server.js';
import { OPENING_SOON_MS } from './open-campaigns.js';
import { startSettleTimer } from './settle-timer.js';
import { DEFAULT_SEND_LIMITS } from './send-packet.js';
import { MAX_PACKETS, MAX_TOTAL_CENTS } from './split.js';

const Env = BaseEnv.extend({
  ...RelayEnv.shape,
  GRPC_PORT: grpcPort(50051),
  ...IdentityEnv,
  REDIS_AUTOPIPELINE: z.enum(['0', '1']).default('1'),
  /** Full reload of the blocklist copy; changes arrive by pub/sub in between. */
  ELIGIBILITY_RESYNC_MS: z.coerce.number().int().min(0).default(60_000),
  /** Processes sharing the port (node:cluster); 1 serves in this process. */
  WORKERS: WorkersEnv,
  MYSQL_URL: urlVar(DEFAULT_MYSQL_URL),
  /** How often ended campaigns are settled automatically; 0 = never. */
  SETTLE_EVERY_MS: z.coerce.number().int().min(0).default(10_000),
  /** Replicas that must have a win before it is answered (Redis WAIT); 0 = off (docs/scale.md). */
  REDIS_WAIT_REPLICAS: z.coerce.number().int().min(0).max(16).default(0),
  REDIS_WAIT_TIMEOUT_MS: z.coerce.number().int().min(1).max(10_000).default(100),
  /**
   * When a win is durable enough to answer (durability.ts): aof (default; replicas when
   * REDIS_WAIT_REPLICAS > 0), aof-everysec, replicas, aof+replicas, or none (best effort, opt-in).
   */
  REDIS_DURABILITY: z.enum(DURABILITY_POLICIES).optional(),
  REDIS_AOF_CHECK_MS: z.coerce.number().int().min(50).max(60_000).default(DEFAULT_AOF_CHECK_MS),
  /** ListOpenCampaigns lists campaigns starting within this much of now ("opening soon"). */
  OPENING_SOON_MS: z.coerce
    .number()
    .int()
    .min(0)
    .max(366 * 24 * 3600 * 1000)
    .default(OPENING_SOON_MS),
  /** SendPacket's per-user limits (docs/money.md): packets a send, cents a send, sends a day. */
  SEND_MAX_PACKETS: z.coerce.number().int().min(1).max(MAX_PACKETS).default(DEFAULT_SEND_LIMITS.maxPackets),
  SEND_MAX_TOTAL_CENTS: z.coerce.number().int().min(1).max(MAX_TOTAL_CENTS).default(DEFAULT_SEND_LIMITS.maxTotalCents),
  SEND_MAX_PER_DAY: z.coerce.number().int().min(0).default(DEFAULT_SEND_LIMITS.maxPerDay),
})
  .transform((e) => ({
    ...e,
    REDIS_DURABILITY: e.REDIS_DURABILITY ?? (e.REDIS_WAIT_REPLICAS > 0 ? 'replicas' : DEFAULT_DURABILITY),
  }))
  .superRefine((e, ctx) => {
    const waits = e.REDIS_DURABILITY === 'replicas' || e.REDIS_DURABILITY === 'aof+replicas';
    if (waits && e.REDIS_WAIT_REPLICAS === 0)
      ctx.addIssue({
        code: 'custom',
        path: ['REDIS_WAIT_REPLICAS'],
        message: `must be at least 1 with REDIS_DURABILITY=${e.REDIS_DURABILITY}`,
      });
    if (!waits && e.REDIS_WAIT_REPLICAS > 0)
      ctx.addIssue({
        code: 'custom',
        path: ['REDIS_DURABILITY'],
        message: `${e.REDIS_DURABILITY} ignores REDIS_WAIT_REPLICAS=${e.REDIS_WAIT_REPLICAS}: use replicas or aof+replicas`,
      });
  })
  .superRefine(requireKeyMaterial('JWT_JWKS_FILE', 'JWT_JWKS_URL'));

const env = parseEnv('grab-svc', Env, process.env);
const log = createLogger('grab-svc', env.LOG_LEVEL);
// The primary of WORKERS > 1 only supervises (and serves the summed metrics): it never gets past
// this line.
const role = await superviseWorkers(env.WORKERS, log, { metricsPort: env.METRICS_PORT });
const redis = createRedis({
  url: env.REDIS_URL,
  clusterNodes: env.REDIS_CLUSTER_NODES,
  autoPipelining: env.REDIS_AUTOPIPELINE === '1',
});
registerScripts(redis);
redis.on('error', (err) => log.warn({ err: err.message }, 'redis error'));

// Registered before anything starts: a SIGTERM during start-up (a worker replaced and stopped at
// once, say) must still end in a clean exit, not in Node's default death by signal.
let stop: () => Promise<void> = async () => undefined;
onShutdownSignal(log, () => stop());

const eligibility = new EligibilityMirror(redis, log, { resyncMs: env.ELIGIBILITY_RESYNC_MS });
await eligibility.start();
log.info(eligibility.size, 'eligibility mirror loaded');
const switches = new Switches(redis, log);
await switches.start();

await migrate(env.MYSQL_URL, (m) => log.info(m));
const pool = createPool(env.MYSQL_URL);

const createdHere = new Set<string>();
const scope = env.RELAY_SCOPE === 'created-here' ? async () => [...createdHere] : undefined;

// WAIT blocks the connection it is sent on: the grab path's and the relay's replica barriers each
// get a connection of their own.
const waitReplicas = env.REDIS_DURABILITY === 'replicas' || env.REDIS_DURABILITY === 'aof+replicas';
const ackConnections: RedisClient[] = [];
const durabilityFor = (part: string): Durability => {
  const ackRedis = waitReplicas ? redis.duplicate() : undefined;
  if (ackRedis) ackConnections.push(ackRedis);
  return new Durability({
    policy: env.REDIS_DURABILITY,
    redis,
    replicaAck: ackRedis
      ? new ReplicaAck({
          redis: ackRedis,
          replicas: env.REDIS_WAIT_REPLICAS,
          timeoutMs: env.REDIS_WAIT_TIMEOUT_MS,
          log: log.child({ part: `${part}-replica-ack` }),
        })
      : undefined,
    log: log.child({ part: `${part}-durability` }),
    checkEveryMs: env.REDIS_AOF_CHECK_MS,
  });
};
const durability = durabilityFor('grab');
await durability.start();
log.info({ policy: durability.policy, problem: durability.problem }, 'durability policy');
const topology = env.WINS_TOPOLOGY_SUFFIX ? topologyWithSuffix(env.WINS_TOPOLOGY_SUFFIX) : DEFAULT_TOPOLOGY;

// The relay gets connections of its own, so it never queues behind (or slows) a grab.
const relayRedis = env.RELAY_ENABLED === '1' ? redis.duplicate() : undefined;
const relayDurability = relayRedis ? durabilityFor('relay') : undefined;
await relayDurability?.start();
const relay = relayRedis
  ? new OutboxRelay({
      redis: relayRedis,
      amqpUrl: env.AMQP_URL,
      topology,
      connectionName: env.RELAY_CONNECTION_NAME,
      log: log.child({ part: 'relay' }),
      batchSize: env.RELAY_BATCH,
      claimIdleMs: env.RELAY_CLAIM_IDLE_MS,
      campaigns: scope,
      durable: env.REDIS_DURABILITY === 'none' ? undefined : (pool) => relayDurability!.confirm([pool]),
    })
  : undefined;
relay?.start();
const stopSettling =
  env.SETTLE_EVERY_MS > 0
    ? startSettleTimer({ redis, pool, log, everyMs: env.SETTLE_EVERY_MS, campaigns: scope })
    : undefined;

const services = createGrabServer({
  redis,
  eligibility,
  tokens: verifierFromEnv(env, log),
  log,
  pool,
  onCampaignCreated: (id) => createdHere.add(id),
  switches,
  durability: env.REDIS_DURABILITY === 'none' ? undefined : durability,
  queueDepth: winsQueueDepth(env.AMQP_URL, topology.queue),
  openingSoonMs: env.OPENING_SOON_MS,
  sendLimits: {
    maxPackets: env.SEND_MAX_PACKETS,
    maxTotalCents: env.SEND_MAX_TOTAL_CENTS,
    maxPerDay: env.SEND_MAX_PER_DAY,
  },
});
// SERVING only while Redis answers: grabs need nothing else (the relay retries on its own)
const running = await startServer({
  services,
  port: env.GRPC_PORT,
  log,
  tls: readTlsFiles(tlsFilesFromEnv(env)),
  ready: async () => (await redis.ping()) === 'PONG',
});
const metrics = role.metricsPort > 0 ? await serveMetrics(role.metricsPort) : undefined;

stop = async () => {
  await running.shutdown();
  await metrics?.close();
  eligibility.stop();
  switches.stop();
  await stopSettling?.();
  await relay?.stop();
  durability.stop();
  relayDurability?.stop();
  await pool.end();
  await relayRedis?.quit();
  for (const c of ackConnections) await c.quit();
  await redis.quit();
};

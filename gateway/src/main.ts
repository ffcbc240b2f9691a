/** gateway entry point: reads the environment, loads the rules, serves Envoy's RLS, stops on SIGTERM. */
import { fileURLToPath } from 'node:url';
import {
  BaseEnv,
  createLogger,
  createRedis,
  grpcPort,
  metricsPort,
  onShutdownSignal,
  parseEnv,
  registerRateLimitRules,
  registry,
  serveMetrics,
  startServer,
  superviseWorkers,
  Switches,
  WorkersEnv,
  readTlsFiles,
  tlsFilesFromEnv,
} from '@redpacket/lib';
import { z } from 'zod';
import { listRules, loadConfig, type RateLimitConfig } from './config.js';
import { Limiter } from './limiter.js';
import { registerScripts } from './scripts.js';
import { createGatewayServer } from './server.js';

const defaultConfig = fileURLToPath(new URL('../config/ratelimit.yaml', import.meta.url));
const flag = z.enum(['0', '1']).transform((v) => v === '1');

const Env = BaseEnv.extend({
  GRPC_PORT: grpcPort(50054),
  RATELIMIT_CONFIG: z.string().min(1).default(defaultConfig),
  /** 1: a decision Redis cannot answer is allowed (and counted); 0: the call fails UNAVAILABLE. */
  RATELIMIT_FAIL_OPEN: flag.default(true),
  RATELIMIT_OVER_LIMIT_CACHE_MS: z.coerce.number().int().min(0).max(5000).default(500),
  RATELIMIT_FLAG_CACHE_MS: z.coerce.number().int().min(0).max(5000).default(500),
  /** A Redis reply later than this fails the decision (then fail-open decides). */
  REDIS_TIMEOUT_MS: z.coerce.number().int().min(1).max(10_000).default(100),
  /** Prometheus text on http://0.0.0.0:METRICS_PORT/metrics (on by default here); 0 = off. */
  METRICS_PORT: metricsPort(9464),
  REDIS_AUTOPIPELINE: flag.default(true),
  /** Processes sharing the port (node:cluster); 1 serves in this process. Buckets live in Redis. */
  WORKERS: WorkersEnv,
});

const env = parseEnv('gateway', Env, process.env);
const log = createLogger('gateway', env.LOG_LEVEL);
const config = loadConfig(env.RATELIMIT_CONFIG);
// The primary of WORKERS > 1 only supervises (and serves the summed metrics of lib's registry):
// it never gets past this line.
const role = await superviseWorkers(env.WORKERS, log, {
  metricsPort: env.METRICS_PORT,
  forward: ['SIGHUP'],
});
const redis = createRedis({
  url: env.REDIS_URL,
  clusterNodes: env.REDIS_CLUSTER_NODES,
  autoPipelining: env.REDIS_AUTOPIPELINE,
  // While Redis is away a decision fails at once (and fails open) instead of queueing.
  offlineQueue: false,
  commandTimeoutMs: env.REDIS_TIMEOUT_MS,
});
registerScripts(redis);
redis.on('error', (err) => log.warn({ err: err.message }, 'redis error'));
// Without the offline queue, decisions before the first connection would all fail open: wait a bit.
await waitForRedis(5000);

// Operators' rate limit overrides (`redpacket switch set ratelimit.<rule> N`), seen within 500 ms.
const switches = new Switches(redis, log);
await switches.start();
// The rules the switch command checks names against; written again now and then (a Redis restart
// loses them) and on every reload.
let rules: RateLimitConfig = config;
const publishRules = (): Promise<void> =>
  registerRateLimitRules(redis, listRules(rules)).catch((err: Error) =>
    log.warn({ err: err.message }, 'could not register the rate limit rules in Redis; retrying later'),
  );
await publishRules();
const republish = setInterval(() => void publishRules(), 30_000);
republish.unref();

// lib's registry: the decisions next to the RPC, dependency and process metrics every service has
const limiter = new Limiter({
  redis,
  config,
  log,
  registry,
  failOpen: env.RATELIMIT_FAIL_OPEN,
  overLimitCacheMs: env.RATELIMIT_OVER_LIMIT_CACHE_MS,
  flagCacheMs: env.RATELIMIT_FLAG_CACHE_MS,
  overrides: (ruleId) => switches.rateLimitOverride(ruleId),
});
const running = await startServer({
  services: createGatewayServer({ limiter, log }),
  port: env.GRPC_PORT,
  log,
  tls: readTlsFiles(tlsFilesFromEnv(env)),
  // Decisions fail open without Redis, but the health check tells Envoy and the operator the truth.
  ready: async () => (await redis.ping()) === 'PONG',
});
log.info({ config: env.RATELIMIT_CONFIG, domain: config.domain }, 'rate limit rules loaded');

const metricsServer = role.metricsPort > 0 ? await serveMetrics(role.metricsPort) : undefined;

async function waitForRedis(ms: number): Promise<void> {
  if (redis.status === 'ready') return;
  const ready = new Promise<boolean>((resolve) => redis.once('ready', () => resolve(true)));
  const late = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms).unref());
  if (!(await Promise.race([ready, late])))
    log.warn({ ms }, 'redis not ready yet; serving anyway (decisions fail open)');
}

// Rules are reloaded on SIGHUP; a file that does not parse leaves the running rules in place.
process.on('SIGHUP', () => {
  try {
    const next = loadConfig(env.RATELIMIT_CONFIG);
    limiter.setConfig(next);
    rules = next;
    void publishRules();
    log.info({ config: env.RATELIMIT_CONFIG, domain: next.domain }, 'rate limit rules reloaded');
  } catch (err) {
    log.error({ err: (err as Error).message }, 'rate limit rules not reloaded: keeping the running ones');
  }
});

onShutdownSignal(log, async () => {
  await running.shutdown();
  clearInterval(republish);
  switches.stop();
  await metricsServer?.close();
  await redis.quit();
});

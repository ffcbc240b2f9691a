/** grab-svc entry point: reads the environment, connects, serves, and shuts down on SIGTERM. */
import { createLogger, createRedis, onShutdownSignal, startServer, TokenVerifier } from '@redpacket/lib';
import { z } from 'zod';
import { EligibilityMirror } from './eligibility-mirror.js';
import { registerScripts } from './scripts.js';
import { createGrabServer } from './server.js';
import { superviseWorkers } from './workers.js';

const Env = z.object({
  GRPC_PORT: z.coerce.number().int().min(0).max(65535).default(50051),
  REDIS_URL: z.string().url().default('redis://127.0.0.1:6379'),
  REDIS_CLUSTER_NODES: z.string().optional(),
  JWT_SECRET: z.string().min(16).default('dev-secret-change-me-0123456789'),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  REDIS_AUTOPIPELINE: z.enum(['0', '1']).default('1'),
  /** Full reload of the blocklist copy; changes arrive by pub/sub in between. */
  ELIGIBILITY_RESYNC_MS: z.coerce.number().int().min(0).default(60_000),
  /** Processes sharing the port (node:cluster); 1 serves in this process. */
  WORKERS: z.coerce.number().int().min(1).max(64).default(1),
});

const parsed = Env.safeParse(process.env);
if (!parsed.success) {
  for (const issue of parsed.error.issues)
    console.error(`grab-svc: bad environment variable ${issue.path.join('.')}: ${issue.message}`);
  process.exit(2);
}
const env = parsed.data;
const log = createLogger('grab-svc', env.LOG_LEVEL);
// The primary of WORKERS > 1 only supervises: it never gets past this line.
await superviseWorkers(env.WORKERS, log);
const redis = createRedis({
  url: env.REDIS_URL,
  clusterNodes: env.REDIS_CLUSTER_NODES,
  autoPipelining: env.REDIS_AUTOPIPELINE === '1',
});
registerScripts(redis);
redis.on('error', (err) => log.warn({ err: err.message }, 'redis error'));

const eligibility = new EligibilityMirror(redis, log, { resyncMs: env.ELIGIBILITY_RESYNC_MS });
await eligibility.start();
log.info(eligibility.size, 'eligibility mirror loaded');

const services = createGrabServer({
  redis,
  eligibility,
  tokens: new TokenVerifier({ secret: env.JWT_SECRET }),
  log,
});
const running = await startServer({ services, port: env.GRPC_PORT, log });

onShutdownSignal(log, async () => {
  await running.shutdown();
  eligibility.stop();
  await redis.quit();
});

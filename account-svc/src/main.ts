/** account-svc entry point: reads the environment, migrates, resyncs the mirror, serves. */
import { createPool, DEFAULT_MYSQL_URL, migrate } from '@redpacket/db';
import {
  BaseEnv,
  createLogger,
  createRedis,
  grpcPort,
  IdentityEnv,
  onShutdownSignal,
  parseEnv,
  PortNumber,
  startServer,
  Switches,
  requireKeyMaterial,
  serveMetrics,
  urlVar,
  readTlsFiles,
  tlsFilesFromEnv,
} from '@redpacket/lib';
import { z } from 'zod';
import { keepMirrorInSync } from './eligibility-mirror.js';
import { startJwksServer, JWKS_PATH } from './jwks-http.js';
import { createAccountServer, DEFAULT_MAX_SESSION_SECONDS } from './server.js';
import { loadSigningKeys } from './signing-key.js';

const Env = BaseEnv.extend({
  GRPC_PORT: grpcPort(50052),
  MYSQL_URL: urlVar(DEFAULT_MYSQL_URL),
  ...IdentityEnv,
  /** The EC P-256 private key (PEM) IssueToken signs with: `redpacket keys generate` makes one. */
  JWT_PRIVATE_KEY_FILE: z.string().min(1).optional(),
  /** The kid tokens carry; default: the key's JWK thumbprint (what `redpacket keys` publishes). */
  JWT_KEY_ID: z.string().min(1).optional(),
  /** Where verifiers and Envoy fetch the JWKS (public keys); "off" serves none. */
  JWKS_PORT: z.union([z.literal('off'), PortNumber]).default(50062),
  JWKS_HOST: z.string().default('127.0.0.1'),
  TOKEN_TTL_SECONDS: z.coerce.number().int().min(1).default(3600),
  TOKEN_MAX_TTL_SECONDS: z.coerce.number().int().min(1).default(86_400),
  /** How long refreshes may extend a session past its sign-in (auth_time). */
  TOKEN_MAX_SESSION_SECONDS: z.coerce.number().int().min(1).default(DEFAULT_MAX_SESSION_SECONDS),
  /** bcrypt cost: 10 is about 50-100 ms a hash here. */
  PASSWORD_HASH_COST: z.coerce.number().int().min(4).max(15).default(10),
  IMPORT_BATCH_SIZE: z.coerce.number().int().min(1).max(10_000).default(2000),
  IMPORT_CONCURRENCY: z.coerce.number().int().min(1).max(32).default(4),
  MIGRATE_ON_START: z.enum(['0', '1']).default('1'),
}).superRefine(requireKeyMaterial('JWT_PRIVATE_KEY_FILE'));

const env = parseEnv('account-svc', Env, process.env);
const log = createLogger('account-svc', env.LOG_LEVEL);
const keys = loadSigningKeys(env, log);

if (env.MIGRATE_ON_START === '1') await migrate(env.MYSQL_URL, (m) => log.info(m));
const pool = createPool(env.MYSQL_URL, env.IMPORT_CONCURRENCY + 6);
const redis = createRedis({ url: env.REDIS_URL, clusterNodes: env.REDIS_CLUSTER_NODES });
redis.on('error', (err) => log.warn({ err: err.message }, 'redis error'));

const mirror = await keepMirrorInSync(pool, redis, log);
const switches = new Switches(redis, log);
await switches.start();

const services = createAccountServer({
  pool,
  redis,
  tokens: keys.verifier,
  log,
  signer: keys.signer,
  passwordCost: env.PASSWORD_HASH_COST,
  tokenTtlSeconds: env.TOKEN_TTL_SECONDS,
  maxTokenTtlSeconds: env.TOKEN_MAX_TTL_SECONDS,
  maxSessionSeconds: env.TOKEN_MAX_SESSION_SECONDS,
  import: { batchSize: env.IMPORT_BATCH_SIZE, concurrency: env.IMPORT_CONCURRENCY },
  switches,
});
const running = await startServer({
  services,
  port: env.GRPC_PORT,
  log,
  tls: readTlsFiles(tlsFilesFromEnv(env)),
  ready: async () => (await redis.ping()) === 'PONG' && (await pool.query('SELECT 1')).length > 0,
});
const metrics = env.METRICS_PORT > 0 ? await serveMetrics(env.METRICS_PORT) : undefined;
const jwks =
  env.JWKS_PORT === 'off'
    ? undefined
    : await startJwksServer({ jwks: keys.jwks, host: env.JWKS_HOST, port: env.JWKS_PORT });
if (jwks) log.info({ host: env.JWKS_HOST, port: jwks.port, path: JWKS_PATH }, 'JWKS served');

onShutdownSignal(log, async () => {
  mirror.stop();
  switches.stop();
  await running.shutdown();
  await jwks?.close();
  await metrics?.close();
  await pool.end();
  await redis.quit();
});

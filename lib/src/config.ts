/**
 * Environment parsing for the services' main.ts: one base schema every main extends, the field
 * builders and named defaults the mains share, and parseEnv (typed values out, or exit 2).
 */
import { z } from 'zod';
import { DEFAULT_JWT_AUDIENCE, DEFAULT_JWT_ISSUER } from './signing-keys.js';
import { tlsEnvIssues } from './tls.js';

/** The local Redis: every service's default, for development. */
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/** pino's levels, "silent" included. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export const DEFAULT_LOG_LEVEL = 'info';

/** No metrics listener unless asked for (a gateway asks by default). */
export const DEFAULT_METRICS_PORT = 0;

/** A TCP port number, 0 = any free port. */
export const PortNumber = z.coerce.number().int().min(0).max(65535);

/** GRPC_PORT, each service with its own default. */
export const grpcPort = (defaultPort: number) => PortNumber.default(defaultPort);

/** METRICS_PORT: Prometheus text at http://0.0.0.0:METRICS_PORT/metrics; 0 = off. */
export const metricsPort = (defaultPort: number = DEFAULT_METRICS_PORT) => PortNumber.default(defaultPort);

/** A URL variable (MYSQL_URL, AMQP_URL) whose default lives with the package that owns it. */
export const urlVar = (defaultUrl: string) => z.string().url().default(defaultUrl);

/**
 * What every token verifier reads: its public keys, from JWT_JWKS_FILE (a JWKS document) or
 * JWT_JWKS_URL (account-svc's /.well-known/jwks.json), and the one accepted issuer and audience.
 * REDPACKET_DEV=1 lets a service start without key material; never for production.
 */
export const IdentityEnv = {
  JWT_JWKS_FILE: z.string().min(1).optional(),
  JWT_JWKS_URL: z.string().url().optional(),
  JWT_ISSUER: z.string().min(1).default(DEFAULT_JWT_ISSUER),
  JWT_AUDIENCE: z.string().min(1).default(DEFAULT_JWT_AUDIENCE),
  REDPACKET_DEV: z.enum(['0', '1']).default('0'),
};

/**
 * A refinement for a main's schema: refuses to start without one of `names` unless
 * REDPACKET_DEV=1, so no deployment falls back to a well-known key. The issue names the first.
 */
export function requireKeyMaterial(...names: [string, ...string[]]) {
  return (env: Record<string, unknown>, ctx: z.RefinementCtx): void => {
    if (env['REDPACKET_DEV'] === '1' || names.some((n) => env[n] !== undefined)) return;
    const others = names.slice(1);
    ctx.addIssue({
      code: 'custom',
      path: [names[0]],
      message: `required${others.length ? ` (or ${others.join(' or ')})` : ''}; REDPACKET_DEV=1 allows a throwaway dev key`,
    });
  };
}

/** What a name suffix (WINS_TOPOLOGY_SUFFIX) may hold: it goes into RabbitMQ names. */
export const NAME_SUFFIX_PATTERN = /^[A-Za-z0-9_.-]*$/;

/** WINS_TOPOLOGY_SUFFIX: suffix of the exchange and queue names (tests run side by side); empty = the defaults. */
export const topologySuffix = () =>
  z.string().regex(NAME_SUFFIX_PATTERN, 'letters, digits, "_", "." and "-" only').default('');

/** What every service's main reads: its Redis, its log level, its metrics port. */
export const BaseEnv = z.object({
  REDIS_URL: urlVar(DEFAULT_REDIS_URL),
  /** "host:port,host:port" of a Redis Cluster: when set, used instead of REDIS_URL. */
  REDIS_CLUSTER_NODES: z.string().optional(),
  LOG_LEVEL: z.enum(LOG_LEVELS).default(DEFAULT_LOG_LEVEL),
  METRICS_PORT: metricsPort(),
  /** mTLS in the mesh (tls.ts): this process's certificate, its key, the CA; all three or none. */
  GRPC_TLS_CERT_FILE: z.string().min(1).optional(),
  GRPC_TLS_KEY_FILE: z.string().min(1).optional(),
  GRPC_TLS_CA_FILE: z.string().min(1).optional(),
});

/**
 * Parses `env` with `schema`; on a bad value prints every problem and exits with status 2. A
 * partial GRPC_TLS_* set is refused here, whatever the schema, so no main can forget it.
 */
export function parseEnv<S extends z.ZodType>(service: string, schema: S, env: NodeJS.ProcessEnv): z.infer<S> {
  const parsed = schema.safeParse(env);
  const tls = tlsEnvIssues(env).map((i) => ({ path: [i.name], message: i.message }));
  if (parsed.success && tls.length === 0) return parsed.data;
  for (const issue of [...(parsed.success ? [] : parsed.error.issues), ...tls]) {
    console.error(`${service}: bad environment variable ${issue.path.join('.')}: ${issue.message}`);
  }
  process.exit(2);
}

/** The base env schema the mains extend: its defaults, a main's own default winning, the refusals. */
import { describe, expect, it } from 'vitest';
import {
  BaseEnv,
  DEFAULT_JWT_AUDIENCE,
  DEFAULT_JWT_ISSUER,
  DEFAULT_LOG_LEVEL,
  DEFAULT_METRICS_PORT,
  DEFAULT_REDIS_URL,
  grpcPort,
  IdentityEnv,
  metricsPort,
  parseEnv,
  requireKeyMaterial,
  topologySuffix,
} from '../src/index.js';

const issues = (r: { success: boolean; error?: { issues: { path: PropertyKey[]; message: string }[] } }) =>
  (r.error?.issues ?? []).map((i) => `${i.path.join('.')}: ${i.message}`);

describe('BaseEnv', () => {
  it('defaults every common variable to its named constant', () => {
    expect(BaseEnv.parse({})).toEqual({
      REDIS_URL: DEFAULT_REDIS_URL,
      REDIS_CLUSTER_NODES: undefined,
      LOG_LEVEL: DEFAULT_LOG_LEVEL,
      METRICS_PORT: DEFAULT_METRICS_PORT,
    });
  });

  it('lets a main replace a default and add its own fields', () => {
    const Env = BaseEnv.extend({
      GRPC_PORT: grpcPort(50054),
      METRICS_PORT: metricsPort(9464),
      ...IdentityEnv,
    });
    expect(Env.parse({})).toMatchObject({
      GRPC_PORT: 50054,
      METRICS_PORT: 9464,
      JWT_ISSUER: DEFAULT_JWT_ISSUER,
      JWT_AUDIENCE: DEFAULT_JWT_AUDIENCE,
      REDPACKET_DEV: '0',
    });
    expect(Env.parse({ GRPC_PORT: '0', METRICS_PORT: '9100', LOG_LEVEL: 'silent' })).toMatchObject({
      GRPC_PORT: 0,
      METRICS_PORT: 9100,
      LOG_LEVEL: 'silent',
    });
  });

  it('names each bad variable', () => {
    const Env = BaseEnv.extend({ GRPC_PORT: grpcPort(1), ...IdentityEnv, SUFFIX: topologySuffix() });
    const r = Env.safeParse({
      REDIS_URL: 'not a url',
      LOG_LEVEL: 'loud',
      METRICS_PORT: '65536',
      GRPC_PORT: 'x',
      JWT_JWKS_URL: 'not a url',
      SUFFIX: 'a b',
    });
    expect(r.success).toBe(false);
    const got = issues(r);
    expect(got.map((line) => line.split(':')[0])).toEqual([
      'REDIS_URL',
      'LOG_LEVEL',
      'METRICS_PORT',
      'GRPC_PORT',
      'JWT_JWKS_URL',
      'SUFFIX',
    ]);
    expect(got).toContain('SUFFIX: letters, digits, "_", "." and "-" only');
  });
});

describe('requireKeyMaterial', () => {
  const Env = BaseEnv.extend({ ...IdentityEnv }).superRefine(requireKeyMaterial('JWT_JWKS_FILE', 'JWT_JWKS_URL'));

  it('refuses a start without key material, naming the variable, unless REDPACKET_DEV=1', () => {
    expect(issues(Env.safeParse({}))).toEqual([
      'JWT_JWKS_FILE: required (or JWT_JWKS_URL); REDPACKET_DEV=1 allows a throwaway dev key',
    ]);
    expect(Env.safeParse({ JWT_JWKS_FILE: '/keys/jwks.json' }).success).toBe(true);
    expect(Env.safeParse({ JWT_JWKS_URL: 'http://account-svc:50062/.well-known/jwks.json' }).success).toBe(true);
    expect(Env.safeParse({ REDPACKET_DEV: '1' }).success).toBe(true);
  });

  it('parseEnv prints "bad environment variable NAME" and exits 2', () => {
    const errors: string[] = [];
    const exit = process.exit;
    const error = console.error;
    console.error = (line: string) => errors.push(line);
    process.exit = ((code: number) => {
      throw new Error(`exit ${code}`);
    }) as typeof process.exit;
    try {
      expect(() => parseEnv('grab-svc', Env, {})).toThrow('exit 2');
    } finally {
      process.exit = exit;
      console.error = error;
    }
    expect(errors).toEqual([
      'grab-svc: bad environment variable JWT_JWKS_FILE: required (or JWT_JWKS_URL); REDPACKET_DEV=1 allows a throwaway dev key',
    ]);
  });
});

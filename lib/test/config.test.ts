/** The base env schema the mains extend: its defaults, a main's own default winning, the refusals. */
import { describe, expect, it } from 'vitest';
import {
  BaseEnv,
  DEFAULT_JWT_SECRET,
  DEFAULT_LOG_LEVEL,
  DEFAULT_METRICS_PORT,
  DEFAULT_REDIS_URL,
  grpcPort,
  jwtSecret,
  metricsPort,
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
      JWT_SECRET: jwtSecret(),
    });
    expect(Env.parse({})).toMatchObject({ GRPC_PORT: 50054, METRICS_PORT: 9464, JWT_SECRET: DEFAULT_JWT_SECRET });
    expect(Env.parse({ GRPC_PORT: '0', METRICS_PORT: '9100', LOG_LEVEL: 'silent' })).toMatchObject({
      GRPC_PORT: 0,
      METRICS_PORT: 9100,
      LOG_LEVEL: 'silent',
    });
  });

  it('names each bad variable', () => {
    const Env = BaseEnv.extend({ GRPC_PORT: grpcPort(1), JWT_SECRET: jwtSecret(), SUFFIX: topologySuffix() });
    const r = Env.safeParse({
      REDIS_URL: 'not a url',
      LOG_LEVEL: 'loud',
      METRICS_PORT: '65536',
      GRPC_PORT: 'x',
      JWT_SECRET: 'short',
      SUFFIX: 'a b',
    });
    expect(r.success).toBe(false);
    const got = issues(r);
    expect(got.map((line) => line.split(':')[0])).toEqual([
      'REDIS_URL',
      'LOG_LEVEL',
      'METRICS_PORT',
      'GRPC_PORT',
      'JWT_SECRET',
      'SUFFIX',
    ]);
    expect(got).toContain('SUFFIX: letters, digits, "_", "." and "-" only');
  });
});

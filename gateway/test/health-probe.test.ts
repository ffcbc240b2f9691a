/** docker/grpc-health-probe.mjs, the compose healthcheck of every Node service, against a real server. */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createLogger, createRedis, startServer } from '@redpacket/lib';
import { requireRedis, TEST_REDIS_URL } from '@redpacket/lib/testing';
import { Registry } from 'prom-client';
import { describe, expect, test } from 'vitest';
import { loadConfig } from '../src/config.js';
import { Limiter } from '../src/limiter.js';
import { RLS_SERVICE } from '../src/rls-proto.js';
import { createGatewayServer } from '../src/server.js';

const probe = fileURLToPath(new URL('../../docker/grpc-health-probe.mjs', import.meta.url));
const run = (...args: string[]): Promise<number> =>
  promisify(execFile)('node', [probe, ...args]).then(
    () => 0,
    (err: { code?: number }) => err.code ?? -1,
  );

describe('grpc-health-probe', () => {
  test('exits 0 for a serving gateway, 1 once it stops serving and for a closed port', async () => {
    (await requireRedis()).disconnect();
    const log = createLogger('probe-test', 'silent');
    const redis = createRedis({ url: TEST_REDIS_URL });
    const config = loadConfig(fileURLToPath(new URL('../config/ratelimit.yaml', import.meta.url)));
    const limiter = new Limiter({ redis, config, log, registry: new Registry() });
    const server = await startServer({
      services: createGatewayServer({ limiter, log }),
      host: '127.0.0.1',
      port: 0,
      log,
    });
    try {
      expect(await run(String(server.port))).toBe(0);
      expect(await run(String(server.port), RLS_SERVICE)).toBe(0);
      server.setServing('NOT_SERVING');
      expect(await run(String(server.port))).toBe(1);
    } finally {
      await server.shutdown(1000);
      redis.disconnect();
    }
    expect(await run(String(server.port))).toBe(1);
  });
});

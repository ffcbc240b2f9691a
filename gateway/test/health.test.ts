/**
 * gateway's main: its health follows its Redis. Decisions fail open while Redis is gone, but
 * grpc.health.v1 answers NOT_SERVING, so Envoy's health check and the operator see the outage.
 */
import { credentials, makeGenericClientConstructor } from '@grpc/grpc-js';
import { exitCodeOf, pollUntil, startRedisServer, type TestRedisServer } from '@redpacket/lib/testing';
import { freePort, spawnNode, type Child } from '@redpacket/loadgen';
import { service as healthService } from 'grpc-health-check';
import { afterAll, expect, it } from 'vitest';
import { RLS_SERVICE } from '../src/rls-proto.js';

interface HealthClient {
  check(r: { service: string }, cb: (e: Error | null, r: { status: string }) => void): void;
  close(): void;
}

let redis: TestRedisServer | undefined;
let child: Child | undefined;
let client: HealthClient | undefined;

afterAll(async () => {
  client?.close();
  await child?.stop();
  await redis?.stop();
});

it('NOT_SERVING while its Redis is down, SERVING again once it is back; exits 0 on SIGTERM', async () => {
  const redisPort = await freePort();
  const grpcPort = await freePort();
  redis = await startRedisServer(redisPort);
  child = spawnNode(new URL('../dist/main.js', import.meta.url), [], {
    GRPC_PORT: String(grpcPort),
    METRICS_PORT: '0',
    REDIS_URL: redis.url,
    LOG_LEVEL: 'info',
  });
  await child.waitFor(/listening/, 30_000);
  const Health = makeGenericClientConstructor(healthService, 'Health');
  client = new Health(`127.0.0.1:${grpcPort}`, credentials.createInsecure()) as unknown as HealthClient;
  const status = (service: string): Promise<string> =>
    new Promise((resolve, reject) => client!.check({ service }, (e, r) => (e ? reject(e) : resolve(r.status))));

  await pollUntil('SERVING with Redis up', async () => (await status(RLS_SERVICE)) === 'SERVING');
  expect(await status('')).toBe('SERVING');

  await redis.stop();
  await pollUntil('NOT_SERVING once Redis is gone', async () => (await status(RLS_SERVICE)) === 'NOT_SERVING', 10_000);
  expect(await status('')).toBe('NOT_SERVING');

  redis = await startRedisServer(redisPort);
  await pollUntil('SERVING once Redis is back', async () => (await status(RLS_SERVICE)) === 'SERVING', 15_000);
  expect(await status('')).toBe('SERVING');

  const exit = exitCodeOf(child.proc);
  child.proc.kill('SIGTERM');
  expect(await exit).toBe(0);
});

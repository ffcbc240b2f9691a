import { createServer } from 'node:net';
import { credentials, makeGenericClientConstructor } from '@grpc/grpc-js';
import { GrabServiceService } from '@redpacket/proto';
import { service as healthService } from 'grpc-health-check';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { expect, it } from 'vitest';
import { implement, startServer } from '../src/index.js';
import { pollUntil, startRedisServer } from '../src/testing.js';

const freePort = (): Promise<number> =>
  new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });

it('health follows the dependency: NOT_SERVING while its Redis is down, SERVING again once it is back', async () => {
  const port = await freePort();
  let redisProc = await startRedisServer(port);
  const redis = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 0, retryStrategy: () => 100 });
  redis.on('error', () => undefined);
  const log = pino({ level: 'silent' });
  // A stand-in for every handler: only the health service is called here.
  const handlers = Object.fromEntries(Object.keys(GrabServiceService).map((name) => [name, async () => ({})]));
  const impl = implement(GrabServiceService, handlers as never, log);
  const server = await startServer({
    services: [{ name: 'redpacket.v1.GrabService', definition: GrabServiceService, implementation: impl }],
    host: '127.0.0.1',
    port: 0,
    log,
    ready: async () => (await redis.ping()) === 'PONG',
    readyEveryMs: 200,
  });
  const Health = makeGenericClientConstructor(healthService, 'Health');
  const client = new Health(`127.0.0.1:${server.port}`, credentials.createInsecure()) as unknown as {
    check: (r: object, cb: (e: Error | null, r: { status: string }) => void) => void;
    close(): void;
  };
  const status = (svc: string): Promise<string> =>
    new Promise((resolve, reject) => client.check({ service: svc }, (e, r) => (e ? reject(e) : resolve(r.status))));
  try {
    await pollUntil('SERVING with Redis up', async () => (await status('redpacket.v1.GrabService')) === 'SERVING');
    await redisProc.stop();
    await pollUntil(
      'NOT_SERVING once Redis is gone',
      async () => (await status('redpacket.v1.GrabService')) === 'NOT_SERVING',
    );
    expect(await status('')).toBe('NOT_SERVING');
    redisProc = await startRedisServer(port);
    await pollUntil('SERVING once Redis is back', async () => (await status('redpacket.v1.GrabService')) === 'SERVING');
    expect(await status('')).toBe('SERVING');
  } finally {
    client.close();
    await server.shutdown(500);
    redis.disconnect();
    await redisProc.stop();
  }
});

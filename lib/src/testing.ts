/** Helpers for the tests of every workspace (imported as '@redpacket/lib/testing'). */
import { Metadata, type CallOptions, type ServiceError } from '@grpc/grpc-js';
import { Redis } from 'ioredis';

export const TEST_REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';
export const TEST_MYSQL_URL = process.env['MYSQL_URL'] ?? 'mysql://root@127.0.0.1:3306/redpacket';
export const TEST_AMQP_URL = process.env['AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672';
export const TEST_JWT_SECRET = 'test-secret-0123456789abcdef';

/** Connects to the test Redis or fails with how to start it (never skips). */
export async function requireRedis(url = TEST_REDIS_URL): Promise<Redis> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    redis.disconnect();
    throw new Error(
      `Redis is not reachable at ${url} (${(err as Error).message}); start it with: ` +
        'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no',
      { cause: err },
    );
  }
  return redis;
}

/** Metadata carrying `authorization: Bearer <token>`. */
export function bearer(token: string): Metadata {
  const md = new Metadata();
  md.set('authorization', `Bearer ${token}`);
  return md;
}

/** The last overload of a generated grpc-js client method, which TypeScript infers from. */
type UnaryMethod<Req, Res> = (
  req: Req,
  md: Metadata,
  options: Partial<CallOptions>,
  cb: (err: ServiceError | null, res: Res) => void,
) => unknown;

/** Calls a generated grpc-js client method as a promise, typed by the method. */
export function call<Req, Res>(method: UnaryMethod<Req, Res>, self: object, req: Req, md: Metadata): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(self, req, md, {}, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** Awaits a promise expected to fail with a gRPC error; returns the error. */
export async function grpcError(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error('expected a gRPC error, got a response');
}

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function pollUntil<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 10_000,
  everyMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Deletes every key matching a pattern (SCAN, never KEYS). */
export async function deleteKeys(redis: Redis, pattern: string): Promise<number> {
  let n = 0;
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    if (found.length) n += await redis.del(...found);
  } while (cursor !== '0');
  return n;
}

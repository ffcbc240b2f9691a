import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { credentials } from '@grpc/grpc-js';
import { jwksFromSecret, keys, signToken, TokenVerifier } from '@redpacket/lib';
import { bearer, pollUntil, requireRedis, TEST_REDIS_URL } from '@redpacket/lib/testing';
import { AccountServiceClient } from '@redpacket/proto';
import { describe, expect, it } from 'vitest';
import { accountApi, requireMysql } from './harness.js';

const main = new URL('../dist/src/main.js', import.meta.url);
const secret = 'main-test-secret-0123456789';
/**
 * The service resyncs the whole mirror at start, which would drop entries that other tests put
 * into rp:blocked of database 0 for users MySQL does not know; this test's service gets a
 * database of its own.
 */
const redisUrl = (): string => {
  const u = new URL(TEST_REDIS_URL);
  u.pathname = '/15';
  return u.toString();
};

describe('npm start -w account-svc (dist/src/main.js)', () => {
  it('migrates, serves gRPC and the JWKS on the configured ports, and stops on SIGTERM', async () => {
    await (await requireMysql()).end();
    const child = spawn(process.execPath, [main.pathname], {
      env: {
        ...process.env,
        GRPC_PORT: '0',
        JWKS_PORT: '0',
        JWT_SECRET: secret,
        LOG_LEVEL: 'info',
        REDIS_URL: redisUrl(),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const logs: Record<string, unknown>[] = [];
    createInterface({ input: child.stdout! }).on('line', (l) => logs.push(JSON.parse(l) as Record<string, unknown>));
    try {
      const find = (msg: string) => logs.find((l) => l['msg'] === msg);
      const grpcLog = await pollUntil('the gRPC port in the log', () => find('gRPC server listening'), 30_000);
      const jwksLog = await pollUntil('the JWKS port in the log', () => find('JWKS served for Envoy'), 5000);
      expect(find('eligibility mirror resynced from MySQL')).toMatchObject({ why: 'start' });

      const jwks = (await (
        await fetch(`http://127.0.0.1:${String(jwksLog['port'])}/.well-known/jwks.json`)
      ).json()) as {
        keys: { k: string }[];
      };
      expect(Buffer.from(jwks.keys[0]!.k, 'base64url').toString()).toBe(secret);

      const client = new AccountServiceClient(`127.0.0.1:${String(grpcLog['port'])}`, credentials.createInsecure());
      const token = await signToken({ secret, userId: 'main-test-nobody' });
      const err = await accountApi(client)
        .getAccount({ userId: '' }, bearer(token))
        .catch((e: { code: number }) => e);
      expect(err).toMatchObject({ code: 5 }); // NOT_FOUND: authenticated with JWT_SECRET, no such row
      client.close();
      expect(JSON.stringify(logs)).not.toContain(token);
    } finally {
      child.kill('SIGTERM');
    }
    const [code] = await once(child, 'exit');
    expect(code).toBe(0);
    const redis = await requireRedis(redisUrl());
    await redis.del(keys.blocked, keys.risk);
    redis.disconnect();
  });

  it('refuses a bad environment with exit code 2', async () => {
    const child = spawn(process.execPath, [main.pathname], {
      env: { ...process.env, GRPC_PORT: 'not-a-port', JWT_SECRET: 'short' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const [code] = await once(child, 'exit');
    expect(code).toBe(2);
    expect(stderr).toContain('GRPC_PORT');
    expect(stderr).toContain('JWT_SECRET');
  });

  it('cli.js prints the JWKS and mints a first admin token from JWT_SECRET', async () => {
    const cli = new URL('../dist/src/cli.js', import.meta.url).pathname;
    const run = async (args: string[]): Promise<{ code: number; out: string }> => {
      const child = spawn(process.execPath, [cli, ...args], {
        env: { ...process.env, JWT_SECRET: secret },
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      const [code] = (await once(child, 'exit')) as [number];
      return { code, out };
    };
    const jwks = await run(['jwks']);
    expect(jwks.code).toBe(0);
    expect(JSON.parse(jwks.out)).toEqual(jwksFromSecret(secret));
    const token = await run(['token', '--user', 'ops', '--role', 'admin', '--ttl', '120']);
    expect(token.code).toBe(0);
    expect(await new TokenVerifier({ secret }).verify(token.out.trim())).toMatchObject({
      userId: 'ops',
      role: 'admin',
    });
    expect((await run(['token', '--user', 'bad id'])).code).toBe(2);
    expect((await run([])).code).toBe(2);
  });
});

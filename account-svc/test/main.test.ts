import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { credentials } from '@grpc/grpc-js';
import { keys } from '@redpacket/lib';
import { bearer, pollUntil, requireRedis, TEST_REDIS_URL, testSigner } from '@redpacket/lib/testing';
import { AccountServiceClient } from '@redpacket/proto';
import { describe, expect, it } from 'vitest';
import { accountApi, requireMysql } from './harness.js';

const main = new URL('../dist/src/main.js', import.meta.url);
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
        ...testSigner().env,
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
      const jwksLog = await pollUntil('the JWKS port in the log', () => find('JWKS served'), 5000);
      expect(find('eligibility mirror resynced from MySQL')).toMatchObject({ why: 'start' });

      const jwks = (await (
        await fetch(`http://127.0.0.1:${String(jwksLog['port'])}/.well-known/jwks.json`)
      ).json()) as { keys: unknown[] };
      expect(jwks).toEqual(testSigner().jwks);

      const client = new AccountServiceClient(`127.0.0.1:${String(grpcLog['port'])}`, credentials.createInsecure());
      const token = await testSigner().sign({ userId: 'main-test-nobody' });
      const err = await accountApi(client)
        .getAccount({ userId: '' }, bearer(token))
        .catch((e: { code: number }) => e);
      expect(err).toMatchObject({ code: 5 }); // NOT_FOUND: authenticated by the JWKS, no such row
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

  it('refuses a bad environment, and no private key, with exit code 2 naming the variable', async () => {
    const refuse = async (env: Record<string, string>): Promise<string> => {
      const child = spawn(process.execPath, [main.pathname], {
        env: { ...process.env, ...env },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const [code] = await once(child, 'exit');
      expect(code).toBe(2);
      return stderr;
    };
    expect(await refuse({ GRPC_PORT: 'not-a-port', ...testSigner().env })).toContain('GRPC_PORT');
    expect(await refuse({ GRPC_PORT: '0', REDPACKET_DEV: '0' })).toContain(
      'account-svc: bad environment variable JWT_PRIVATE_KEY_FILE: required',
    );
  });

  it('cli.js prints the JWKS and mints a first admin token with JWT_PRIVATE_KEY_FILE', async () => {
    const cli = new URL('../dist/src/cli.js', import.meta.url).pathname;
    const run = async (args: string[]): Promise<{ code: number; out: string }> => {
      const child = spawn(process.execPath, [cli, ...args], {
        env: { ...process.env, ...testSigner().env },
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      const [code] = (await once(child, 'exit')) as [number];
      return { code, out };
    };
    const jwks = await run(['jwks']);
    expect(jwks.code).toBe(0);
    expect(JSON.parse(jwks.out)).toEqual(testSigner().jwks);
    const token = await run(['token', '--user', 'ops', '--role', 'admin', '--ttl', '120']);
    expect(token.code).toBe(0);
    expect(await testSigner().verifier().verify(token.out.trim())).toMatchObject({
      userId: 'ops',
      role: 'admin',
    });
    expect((await run(['token', '--user', 'bad id'])).code).toBe(2);
    expect((await run([])).code).toBe(2);
  });
});

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { readJwksFile, readPrivateKeyFile, TokenSigner, TokenVerifier } from '@redpacket/lib';
import { testSigner } from '@redpacket/lib/testing';
import { freePort } from '@redpacket/loadgen';
import { afterAll, describe, expect, it } from 'vitest';
import { readUserBatches } from '../src/users-csv.js';
import { cli, cliJson } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'redpacket-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const verifier = testSigner().verifier();

describe('redpacket keys', () => {
  it('generate, rotate, retire: old tokens verify until their key is retired, then fail', async () => {
    const first = join(dir, 'keys');
    const gen = await cliJson<{ kid: string; jwksFile: string; privateKeyFile: string }>([
      'keys',
      'generate',
      '--out',
      first,
    ]);
    expect(gen.privateKeyFile).toBe(join(first, 'private.pem'));
    const jwksFile = gen.jwksFile;
    expect(readJwksFile(jwksFile).keys.map((k) => k.kid)).toEqual([gen.kid]);
    const again = await cli(['keys', 'generate', '--out', first]);
    expect(again.code).toBe(2); // never overwrites a private key
    const sign = (file: string, userId: string) =>
      new TokenSigner({ privateKeyPem: readPrivateKeyFile(file) }).sign({ userId });
    const oldToken = await sign(gen.privateKeyFile, 'old-key-user');

    const rot = await cliJson<{ kid: string; privateKeyFile: string; kids: string[] }>([
      'keys',
      'rotate',
      '--jwks',
      jwksFile,
      '--out',
      join(dir, 'keys-2'),
    ]);
    expect(rot.kids).toEqual([gen.kid, rot.kid]);
    const published = new TokenVerifier({ jwks: readJwksFile(jwksFile) });
    expect((await published.verify(oldToken)).userId).toBe('old-key-user');
    expect((await published.verify(await sign(rot.privateKeyFile, 'new-key-user'))).userId).toBe('new-key-user');

    expect((await cli(['keys', 'retire', '--jwks', jwksFile, '--kid', gen.kid])).code).toBe(0);
    const retired = new TokenVerifier({ jwks: readJwksFile(jwksFile) });
    await expect(retired.verify(oldToken)).rejects.toMatchObject({ code: 16 }); // UNAUTHENTICATED
    expect((await retired.verify(await sign(rot.privateKeyFile, 'new-key-user'))).userId).toBe('new-key-user');
    const last = await cli(['keys', 'retire', '--jwks', jwksFile, '--kid', rot.kid]);
    expect(last.code).toBe(2);
    expect(last.stderr).toContain('last key');
  });
});

describe('redpacket token', () => {
  it('signs a user token with JWT_PRIVATE_KEY_FILE that the services accept, and prints only the token by default', async () => {
    const plainOut = await cli(['token', 'alice']);
    expect(plainOut.code).toBe(0);
    const token = plainOut.stdout.trim();
    expect(await verifier.verify(token)).toMatchObject({ userId: 'alice', role: 'user' });

    const j = await cliJson<{ userId: string; role: string; token: string; source: string; expiresAt: string }>([
      'token',
      'ops',
      '--admin',
      '--ttl',
      '10m',
    ]);
    expect(j).toMatchObject({ userId: 'ops', role: 'admin', source: 'signed' });
    expect(await verifier.verify(j.token)).toMatchObject({ userId: 'ops', role: 'admin' });
    const ttl = Date.parse(j.expiresAt) - Date.now();
    expect(ttl).toBeGreaterThan(9 * 60_000);
    expect(ttl).toBeLessThanOrEqual(10 * 60_000);
  });

  it('--count signs many users at once, also as a ghz metadata array', async () => {
    const lines = (await cli(['token', 'crowd-', '--count', '3'])).stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(await verifier.verify(lines[2]!)).toMatchObject({ userId: 'crowd-2', role: 'user' });
    const md = JSON.parse((await cli(['token', 'crowd-', '--count', '2', '--ghz-metadata'])).stdout) as {
      authorization: string;
    }[];
    expect(md).toHaveLength(2);
    expect(await verifier.verify(md[1]!.authorization.replace('Bearer ', ''))).toMatchObject({ userId: 'crowd-1' });
  });

  it('exits 3 when --password asks account-svc and it is down', async () => {
    const port = await freePort();
    const r = await cli(['token', 'alice', '--password', 'pw'], { ACCOUNT_ADDR: `127.0.0.1:${port}` });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`account-svc is not reachable at 127.0.0.1:${port}`);
  });
});

describe('redpacket users', () => {
  it('reads a users CSV in batches and refuses bad rows before sending', async () => {
    const file = join(dir, 'users.csv');
    const rows = ['user_id,display_name,password,risk_score'];
    for (let i = 0; i < 25; i++) rows.push(`u${i},User ${i},pw${i},${i}`);
    rows.push('bad id,Bad,pw,1', 'u99,Risky,pw,abc', '', 'u100,,,');
    writeFileSync(file, rows.join('\n'));
    const batches = [];
    for await (const b of readUserBatches(file, 10)) batches.push(b);
    expect(batches.map((b) => b.users.length)).toEqual([10, 10, 6]);
    expect(batches[0]!.users[3]).toEqual({
      userId: 'u3',
      displayName: 'User 3',
      password: 'pw3',
      riskScore: 3,
      role: '',
    });
    expect(batches[2]!.users[5]).toEqual({ userId: 'u100', displayName: '', password: '', riskScore: 0, role: '' });
    const rejected = batches.flatMap((b) => b.rejected);
    expect(rejected).toHaveLength(2);
    expect(rejected[0]).toContain('line 27: user_id "bad id"');
    expect(rejected[1]).toContain('line 28: risk_score "abc"');
  });

  it('import exits 2 for a missing file or a CSV without user_id, and 3 when account-svc is down', async () => {
    const port = await freePort();
    const env = { ACCOUNT_ADDR: `127.0.0.1:${port}` };
    const missing = await cli(['users', 'import', join(dir, 'nope.csv')], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('cannot read');

    const headerless = join(dir, 'headerless.csv');
    writeFileSync(headerless, 'name,password\nbob,pw\n');
    const noHeader = await cli(['users', 'import', headerless], env);
    expect(noHeader.code).toBe(2);
    expect(noHeader.stderr).toContain('user_id column');

    const good = join(dir, 'good.csv');
    writeFileSync(good, 'user_id\nu1\nu2\n');
    const down = await cli(['users', 'import', good], env);
    expect(down.code).toBe(3);
    expect(down.stderr).toContain(`account-svc is not reachable at 127.0.0.1:${port}`);
  });

  it('block and unblock exit 3 when account-svc is down', async () => {
    const port = await freePort();
    for (const args of [
      ['users', 'block', 'mallory', '--reason', 'bot'],
      ['users', 'unblock', 'mallory'],
    ]) {
      const r = await cli(args, { ACCOUNT_ADDR: `127.0.0.1:${port}` });
      expect(r.code, args[1]).toBe(3);
      expect(r.stderr, args[1]).toContain('account-svc is not reachable');
    }
  });
});

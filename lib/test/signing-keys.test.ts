/** ES256 keys and rotation: a JWKS with several keys, a key published before use, a key retired. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createTokenVerifier,
  generateSigningKey,
  jwkThumbprint,
  parseJwks,
  readJwksFile,
  readPrivateKeyFile,
  TokenSigner,
  TokenVerifier,
  withoutKey,
  writeJwksFile,
  writeKeyPair,
} from '../src/index.js';
import { refusedTokens, testSigner } from '../src/testing.js';

const work = mkdtempSync(join(tmpdir(), 'signing-keys-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const signerOf = (file: string) => new TokenSigner({ privateKeyPem: readPrivateKeyFile(file) });
const refused = (p: Promise<unknown>) => expect(p).rejects.toMatchObject({ code: status.UNAUTHENTICATED });

describe('key material', () => {
  it('kid is the RFC 7638 thumbprint of the public key, and the JWKS holds no private part', () => {
    const { jwk } = generateSigningKey();
    expect(jwk.kid).toBe(jwkThumbprint(jwk));
    expect(jwk).not.toHaveProperty('d');
    // RFC 7638 section 3.1's example uses an RSA key; this is the same construction over EC members.
    expect(jwkThumbprint({ crv: 'P-256', x: 'a', y: 'b' })).toBe(
      jwkThumbprint({ y: 'b', x: 'a', crv: 'P-256' } as { crv: string; x: string; y: string }),
    );
  });

  it('refuses a JWKS with a private key, an oct key or a duplicate kid', () => {
    const { jwk } = generateSigningKey();
    expect(() => parseJwks({ keys: [{ ...jwk, d: 'secret' }] }, 'x')).toThrow(/private key/);
    expect(() => parseJwks({ keys: [{ kty: 'oct', k: 'c2VjcmV0', kid: 'a' }] }, 'x')).toThrow(/EC P-256/);
    expect(() => parseJwks({ keys: [jwk, jwk] }, 'x')).toThrow(/twice/);
    expect(() => parseJwks({}, 'x')).toThrow(/not a JWKS/);
  });
});

describe('TokenVerifier over a JWKS', () => {
  it('refuses HS256, alg none, an unknown key, another issuer or audience, and expired tokens', async () => {
    const v = testSigner().verifier();
    for (const [kind, token] of Object.entries(await refusedTokens('u-1'))) {
      await expect(v.verify(token), kind).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
    }
    expect(await v.verify(await testSigner().sign({ userId: 'u-1' }))).toMatchObject({ userId: 'u-1' });
  });

  it('accepts only its configured issuer and audience', async () => {
    const v = new TokenVerifier({ jwks: testSigner().jwks, issuer: 'acme', audience: 'acme-mesh' });
    await refused(v.verify(await testSigner().sign({ userId: 'u-2' })));
    const acme = new TokenSigner({
      privateKeyPem: readPrivateKeyFile(testSigner().privateKeyFile),
      issuer: 'acme',
      audience: 'acme-mesh',
    });
    expect((await v.verify(await acme.sign({ userId: 'u-2' }))).userId).toBe('u-2');
  });
});

describe('rotation', () => {
  it('old tokens verify until their key is retired, new ones from when the key is published', async () => {
    const old = writeKeyPair(join(work, 'old'));
    const jwksFile = old.jwksFile;
    // A verifier reading the file, as a main builds it; the test reloads it by hand.
    const v = createTokenVerifier({ jwksFile, issuer: 'redpacket', audience: 'redpacket-mesh' });
    const oldToken = await signerOf(old.privateKeyFile).sign({ userId: 'before' });
    expect((await v.verify(oldToken)).userId).toBe('before');

    // rotate: a new pair, published beside the old key; account-svc then signs with the new one
    const next = writeKeyPair(join(work, 'next'), readJwksFile(jwksFile));
    writeJwksFile(jwksFile, readJwksFile(next.jwksFile));
    expect(readJwksFile(jwksFile).keys.map((k) => k.kid)).toEqual([old.kid, next.kid]);
    const newToken = await signerOf(next.privateKeyFile).sign({ userId: 'after' });
    const fresh = new TokenVerifier({ jwks: readJwksFile(jwksFile) });
    expect((await fresh.verify(newToken)).userId).toBe('after');
    expect((await fresh.verify(oldToken)).userId).toBe('before');
    await v.reload();
    expect((await v.verify(newToken)).userId).toBe('after');
    expect((await v.verify(oldToken)).userId).toBe('before'); // a cache hit now

    // retire the old key: its tokens fail, even the cached one; the new key's still pass
    writeJwksFile(jwksFile, withoutKey(readJwksFile(jwksFile), old.kid));
    await v.reload();
    expect(v.kids).toEqual([next.kid]);
    await refused(v.verify(oldToken));
    await refused(new TokenVerifier({ jwks: readJwksFile(jwksFile) }).verify(oldToken));
    expect((await v.verify(newToken)).userId).toBe('after');
    expect(() => withoutKey(readJwksFile(jwksFile), next.kid)).toThrow(/last key/);
  });

  it('a verifier picks up a key published after it started, at the first token of that kid', async () => {
    const a = writeKeyPair(join(work, 'a'));
    const v = new TokenVerifier({
      jwks: readJwksFile(a.jwksFile),
      loadJwks: async () => readJwksFile(a.jwksFile),
      minReloadMs: 0,
    });
    const b = writeKeyPair(join(work, 'b'), readJwksFile(a.jwksFile));
    writeFileSync(a.jwksFile, JSON.stringify(readJwksFile(b.jwksFile)));
    expect((await v.verify(await signerOf(b.privateKeyFile).sign({ userId: 'late-key' }))).userId).toBe('late-key');
    // a kid nobody published costs one reload, and is refused
    await refused(
      v.verify(await new TokenSigner({ privateKeyPem: generateSigningKey().privateKeyPem }).sign({ userId: 'x' })),
    );
  });
});

/**
 * `npm run bench:verify`: CPU per first-seen token, HS256 (what tokens were) against ES256 (what
 * they are), both through fast-jwt as TokenVerifier uses it, and a cache hit of TokenVerifier.
 * Every token is distinct (its own sub), so no verification is answered from a cache.
 */
import { createPublicKey } from 'node:crypto';
import { createSigner, createVerifier } from 'fast-jwt';
import { generateSigningKey, TokenSigner, TokenVerifier } from '@redpacket/lib';

const N = Number(process.env['VERIFY_N'] ?? 5000);
const exp = Math.floor(Date.now() / 1000) + 3600;

async function timeEach(label: string, tokens: string[], verify: (t: string) => unknown): Promise<number> {
  const t0 = process.cpuUsage();
  await Promise.all(tokens.map(verify));
  const used = process.cpuUsage(t0);
  const us = (used.user + used.system) / tokens.length;
  console.log(`${label.padEnd(34)} ${us.toFixed(1).padStart(7)} µs CPU per token (${tokens.length} tokens)`);
  return us;
}

const secret = 'bench-secret-0123456789abcdef0123';
const hs = createSigner({ algorithm: 'HS256', key: secret });
const hsTokens = Array.from({ length: N }, (_, i) => hs({ sub: `u${i}`, exp }));
const hsVerify = createVerifier({ algorithms: ['HS256'], key: secret, cache: false });
hsTokens.slice(0, 500).forEach(hsVerify);
await timeEach('fast-jwt HS256 verify', hsTokens, hsVerify);

const { privateKeyPem, jwk } = generateSigningKey();
const signer = new TokenSigner({ privateKeyPem });
const esTokens = await Promise.all(Array.from({ length: N }, (_, i) => signer.sign({ userId: `u${i}` })));
const esVerify = createVerifier({
  algorithms: ['ES256'],
  key: createPublicKey(privateKeyPem).export({ type: 'spki', format: 'pem' }).toString(),
  cache: false,
});
esTokens.slice(0, 500).forEach(esVerify);
await timeEach('fast-jwt ES256 verify', esTokens, esVerify);
const verifier = new TokenVerifier({ jwks: { keys: [jwk] }, cacheSize: 2 * N });
const warm = await Promise.all(Array.from({ length: 500 }, (_, i) => signer.sign({ userId: `warm${i}` })));
await Promise.all(warm.map((t) => verifier.verify(t))); // the JIT warmed on tokens not timed
await timeEach('TokenVerifier ES256, first seen', esTokens, (t) => verifier.verify(t));
await timeEach('TokenVerifier ES256, cache hit', esTokens, (t) => verifier.verify(t));
if (verifier.stats.verified !== N + warm.length) throw new Error(`expected ${N} full verifications`);
console.log(`(${verifier.stats.verified} full verifications, ${verifier.stats.cacheHits} cache hits)`);

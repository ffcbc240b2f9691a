/**
 * `node gateway/dist/jwks-main.js FILE`: fetches the JWKS (public keys) from JWT_JWKS_URL and writes
 * it to FILE, retrying until account-svc answers; Envoy's init container on Kubernetes, whose
 * jwt_authn reads a local file.
 */
import { fetchJwks, parseEnv, pollUntil, writeJwksFile, type Jwks } from '@redpacket/lib';
import { z } from 'zod';

const env = parseEnv(
  'jwks',
  z.object({
    JWT_JWKS_URL: z.string().url(),
    JWKS_WAIT_MS: z.coerce.number().int().min(0).default(120_000),
  }),
  process.env,
);
const file = process.argv[2];
if (!file) {
  console.error('usage: jwks-main.js FILE');
  process.exit(2);
}
const jwks = await pollUntil(
  `the JWKS at ${env.JWT_JWKS_URL}`,
  (): Promise<Jwks | undefined> => fetchJwks(env.JWT_JWKS_URL).catch(() => undefined),
  env.JWKS_WAIT_MS,
  1000,
);
writeJwksFile(file, jwks);
console.error(`jwks: wrote ${file} (${jwks.keys.map((k) => k.kid).join(', ')})`);

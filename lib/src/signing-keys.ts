/**
 * Token key material: EC P-256 key pairs for ES256, their JWKs and RFC 7638 thumbprints (the
 * `kid`), and JWKS documents read from a file or a URL. All crypto is node:crypto's.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type JsonWebKey } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The one signing algorithm: ECDSA over P-256 with SHA-256. */
export const TOKEN_ALGORITHM = 'ES256';
/** Defaults of JWT_ISSUER and JWT_AUDIENCE. */
export const DEFAULT_JWT_ISSUER = 'redpacket';
export const DEFAULT_JWT_AUDIENCE = 'redpacket-mesh';
/** What `keys generate` and `keys rotate` write into their --out directory. */
export const PRIVATE_KEY_FILE_NAME = 'private.pem';
export const JWKS_FILE_NAME = 'jwks.json';

/** One public key of a JWKS: EC P-256, for ES256 signatures. */
export interface PublicJwk {
  kty: 'EC';
  crv: 'P-256';
  x: string;
  y: string;
  kid: string;
  alg: 'ES256';
  use: 'sig';
}

/** A JSON Web Key Set holding only public keys. */
export interface Jwks {
  keys: PublicJwk[];
}

/** RFC 7638 thumbprint of an EC key: SHA-256 of its required members in lexicographic order. */
export function jwkThumbprint(jwk: Pick<JsonWebKey, 'crv' | 'x' | 'y'>): string {
  const canonical = JSON.stringify({ crv: jwk.crv, kty: 'EC', x: jwk.x, y: jwk.y });
  return createHash('sha256').update(canonical).digest('base64url');
}

/** The public JWK of a PEM private (or public) P-256 key; `kid` defaults to its thumbprint. */
export function publicJwkOf(pem: string, kid?: string): PublicJwk {
  const jwk = createPublicKey(pem).export({ format: 'jwk' });
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || !jwk.x || !jwk.y) throw new Error('key is not an EC P-256 key');
  return { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, kid: kid ?? jwkThumbprint(jwk), alg: 'ES256', use: 'sig' };
}

/** A fresh P-256 key pair: the private key as PKCS#8 PEM and its public JWK. */
export function generateSigningKey(): { privateKeyPem: string; jwk: PublicJwk } {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const privateKeyPem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  return { privateKeyPem, jwk: publicJwkOf(privateKeyPem) };
}

/** Checks a parsed document is a JWKS of EC P-256 public keys, each with a distinct kid. */
export function parseJwks(doc: unknown, source: string): Jwks {
  const keys = (doc as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys)) throw new Error(`${source}: not a JWKS (no "keys" array)`);
  const seen = new Set<string>();
  for (const k of keys as Record<string, unknown>[]) {
    if (k['kty'] !== 'EC' || k['crv'] !== 'P-256' || typeof k['x'] !== 'string' || typeof k['y'] !== 'string')
      throw new Error(`${source}: every key must be an EC P-256 public key`);
    if ('d' in k) throw new Error(`${source}: holds a private key; a JWKS must hold public keys only`);
    if (typeof k['kid'] !== 'string' || k['kid'] === '') throw new Error(`${source}: every key needs a kid`);
    if (seen.has(k['kid'])) throw new Error(`${source}: kid ${k['kid']} appears twice`);
    seen.add(k['kid']);
  }
  return { keys: keys as PublicJwk[] };
}

/** Reads and checks a JWKS file. */
export function readJwksFile(file: string): Jwks {
  return parseJwks(JSON.parse(readFileSync(file, 'utf8')), file);
}

/** Fetches and checks the JWKS account-svc serves (JWT_JWKS_URL). */
export async function fetchJwks(url: string, timeoutMs = 5000): Promise<Jwks> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return parseJwks(await res.json(), url);
}

/** Writes a JWKS document (public: readable by every verifier). */
export function writeJwksFile(file: string, jwks: Jwks): void {
  writeFileSync(file, `${JSON.stringify(jwks, null, 2)}\n`, { mode: 0o644 });
}

/** Reads a PEM private key, checking it is EC P-256 (what ES256 needs). */
export function readPrivateKeyFile(file: string): string {
  const pem = readFileSync(file, 'utf8');
  const key = createPrivateKey(pem);
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
    throw new Error(`${file}: not an EC P-256 private key`);
  return pem;
}

/** Files of one key pair written to a directory. */
export interface KeyFiles {
  privateKeyFile: string;
  jwksFile: string;
  kid: string;
}

/**
 * Makes a key pair in `dir`: private.pem (mode 600) and jwks.json, which holds the new public key
 * after the keys of `keep` (rotation publishes the new key beside the current ones).
 */
export function writeKeyPair(dir: string, keep: Jwks = { keys: [] }): KeyFiles {
  mkdirSync(dir, { recursive: true });
  const { privateKeyPem, jwk } = generateSigningKey();
  const privateKeyFile = join(dir, PRIVATE_KEY_FILE_NAME);
  const jwksFile = join(dir, JWKS_FILE_NAME);
  writeFileSync(privateKeyFile, privateKeyPem, { mode: 0o600 });
  writeJwksFile(jwksFile, { keys: [...keep.keys.filter((k) => k.kid !== jwk.kid), jwk] });
  return { privateKeyFile, jwksFile, kid: jwk.kid };
}

/** The JWKS without the key `kid`; throws if it has no such key or it is the last one. */
export function withoutKey(jwks: Jwks, kid: string): Jwks {
  const keys = jwks.keys.filter((k) => k.kid !== kid);
  if (keys.length === jwks.keys.length) throw new Error(`no key with kid ${kid}`);
  if (keys.length === 0) throw new Error(`kid ${kid} is the last key; generate a new one first`);
  return { keys };
}

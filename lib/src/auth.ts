/** Bearer token checks shared by every service: HS256 JWTs signed with JWT_SECRET. */
import type { Metadata } from '@grpc/grpc-js';
import { createVerifier, TokenError } from 'fast-jwt';
import { SignJWT } from 'jose';
import { LRUCache } from 'lru-cache';
import { JWT_SECRET_MIN_LENGTH } from './config.js';
import { permissionDenied, unauthenticated } from './errors.js';

export type Role = 'user' | 'admin';

/** Who is calling, from a verified token. */
export interface Identity {
  userId: string;
  role: Role;
  /** When the account was opened (claim `opened_at`, seconds), if the issuer said. */
  openedAtMs: number | undefined;
}

export interface TokenVerifierOptions {
  secret: string;
  /** Accepted clock difference for exp and nbf. */
  clockToleranceSeconds?: number;
  /** Verified tokens kept, so the hot path does not re-check the same signature. */
  cacheSize?: number;
}

/** Longer tokens are refused before any parsing. */
export const MAX_TOKEN_LENGTH = 4096;
/** User ids: what fits a Redis key and a log line without escaping. */
export const USER_ID_PATTERN = /^[A-Za-z0-9_.@:-]{1,128}$/;

const encoder = new TextEncoder();

/**
 * Verifies bearer tokens. UNAUTHENTICATED for: a token over MAX_TOKEN_LENGTH, anything but a
 * well-formed HS256 JWT (alg none and other algorithms included), a bad signature, a missing or
 * passed `exp`, an `nbf` still ahead, a missing or malformed `sub`. Clock skew: 5 s by default
 * on exp and nbf. Verified tokens are cached until they expire. See docs/identity.md.
 */
export class TokenVerifier {
  /**
   * fast-jwt verifies synchronously with node:crypto; jose's WebCrypto path cost ~3x the CPU per
   * first-seen token (an async thread-pool job each), the top item of the grab profile.
   */
  private readonly verifier: (token: string) => Record<string, unknown>;
  private readonly tolerance: number;
  private readonly cache: LRUCache<string, { identity: Identity; expMs: number }>;
  /** Verifications answered from the cache and by a full signature check, for metrics and tests. */
  readonly stats = { cacheHits: 0, verified: 0 };

  constructor(opts: TokenVerifierOptions) {
    if (opts.secret.length < 16) throw new Error('JWT secret must be at least 16 characters');
    this.tolerance = opts.clockToleranceSeconds ?? 5;
    this.verifier = createVerifier({
      key: opts.secret,
      algorithms: ['HS256'],
      clockTolerance: this.tolerance * 1000,
      requiredClaims: ['sub', 'exp'],
      cache: false,
    });
    const max = opts.cacheSize ?? 100_000;
    // Bounded by bytes too: 100,000 tokens of a typical 300 bytes, not of MAX_TOKEN_LENGTH.
    this.cache = new LRUCache({ max, maxSize: max * 512, sizeCalculation: (_v, token) => token.length });
  }

  /** Verifies a raw JWT; throws UNAUTHENTICATED saying why. */
  async verify(token: string): Promise<Identity> {
    const hit = this.cache.get(token);
    if (hit) {
      if (Date.now() < hit.expMs + this.tolerance * 1000) {
        this.stats.cacheHits++;
        return hit.identity;
      }
      this.cache.delete(token);
    }
    if (token.length > MAX_TOKEN_LENGTH) throw unauthenticated('token too long');
    let payload: Record<string, unknown>;
    try {
      payload = this.verifier(token);
    } catch (err) {
      if (err instanceof TokenError && err.code === TokenError.codes.expired) throw unauthenticated('token expired');
      if (err instanceof TokenError) throw unauthenticated(`invalid token (${err.code})`);
      throw unauthenticated('invalid token');
    }
    this.stats.verified++;
    const sub = payload['sub'];
    if (typeof sub !== 'string' || !USER_ID_PATTERN.test(sub)) throw unauthenticated('invalid token subject');
    const role: Role = payload['role'] === 'admin' ? 'admin' : 'user';
    const openedAt = payload['opened_at'];
    const identity: Identity = {
      userId: sub,
      role,
      openedAtMs: typeof openedAt === 'number' && Number.isFinite(openedAt) ? openedAt * 1000 : undefined,
    };
    this.cache.set(token, { identity, expMs: Number(payload['exp']) * 1000 });
    return identity;
  }

  /** Reads `authorization: Bearer <JWT>` from call metadata and verifies it. */
  async fromMetadata(md: Metadata): Promise<Identity> {
    const values = md.get('authorization');
    if (values.length === 0) throw unauthenticated('missing authorization metadata');
    if (values.length > 1) throw unauthenticated('more than one authorization header');
    const header = String(values[0]);
    const m = /^Bearer ([^\s]+)$/i.exec(header);
    if (!m?.[1]) throw unauthenticated('authorization must be "Bearer <token>"');
    return this.verify(m[1]);
  }

  async admin(md: Metadata): Promise<Identity> {
    const id = await this.fromMetadata(md);
    if (id.role !== 'admin') throw permissionDenied('this call needs an admin token');
    return id;
  }
}

export interface SignOptions {
  secret: string;
  userId: string;
  role?: Role;
  ttlSeconds?: number;
  openedAtMs?: number;
  /** Extra claims, e.g. for tests of refused tokens. */
  claims?: Record<string, unknown>;
}

/** Issues an HS256 token; used by account-svc, the CLI and tests. */
export async function signToken(opts: SignOptions): Promise<string> {
  const claims: Record<string, unknown> = { ...opts.claims };
  if (opts.role === 'admin') claims['role'] = 'admin';
  // Rounded up: an account opened in the same second as a campaign's start never counts as
  // opened before it (the claim is in seconds, the start in milliseconds).
  if (opts.openedAtMs !== undefined) claims['opened_at'] = Math.ceil(opts.openedAtMs / 1000);
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(opts.userId)
    .setIssuedAt()
    .setExpirationTime(`${opts.ttlSeconds ?? 3600}s`)
    .sign(encoder.encode(opts.secret));
}

/** A JSON Web Key Set. */
export interface Jwks {
  keys: { kty: 'oct'; alg: 'HS256'; use: 'sig'; k: string }[];
}

/**
 * The JWKS that Envoy's jwt_authn needs to verify our HS256 tokens: one "oct" key whose `k`
 * is the base64url of JWT_SECRET. It IS the secret: serve it only on an internal port.
 */
export function jwksFromSecret(secret: string): Jwks {
  if (secret.length < JWT_SECRET_MIN_LENGTH)
    throw new Error(`JWT secret must be at least ${JWT_SECRET_MIN_LENGTH} characters`);
  return { keys: [{ kty: 'oct', alg: 'HS256', use: 'sig', k: Buffer.from(secret, 'utf8').toString('base64url') }] };
}

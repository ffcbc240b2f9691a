/** Bearer token checks shared by every service: ES256 JWTs signed by account-svc, checked against a JWKS. */
import { createPublicKey, type JsonWebKey } from 'node:crypto';
import type { Metadata } from '@grpc/grpc-js';
import { createSigner, createVerifier, TokenError } from 'fast-jwt';
import { LRUCache } from 'lru-cache';
import type { Logger } from './logger.js';
import { permissionDenied, unauthenticated } from './errors.js';
import {
  DEFAULT_JWT_AUDIENCE,
  DEFAULT_JWT_ISSUER,
  fetchJwks,
  publicJwkOf,
  readJwksFile,
  TOKEN_ALGORITHM,
  type Jwks,
} from './signing-keys.js';

/** What a token lets its holder do: `merchant` redeems packet codes (GiftService.RedeemPacket). */
export type Role = 'user' | 'merchant' | 'admin';

const ROLES: readonly Role[] = ['user', 'merchant', 'admin'];

/** Who is calling, from a verified token. */
export interface Identity {
  userId: string;
  role: Role;
  /** When the account was opened (claim `opened_at`, seconds), if the issuer said. */
  openedAtMs: number | undefined;
  /**
   * When the session began (claim `auth_time`, seconds): the sign-in that started the chain of
   * refreshes this token belongs to. Only tokens from IssueToken and RefreshToken carry it.
   */
  authTimeMs?: number;
}

export interface TokenVerifierOptions {
  /** The public keys tokens are checked with, each selected by its `kid`. */
  jwks?: Jwks;
  /**
   * Where to read the keys again (JWT_JWKS_FILE or JWT_JWKS_URL): at the first token when `jwks` is
   * not given, on a token whose kid is unknown, and every `refreshMs`, so a published key is
   * accepted and a retired one refused without a restart.
   */
  loadJwks?: () => Promise<Jwks>;
  /** Least time between two loads, so unknown kids cannot make us hammer the JWKS source. */
  minReloadMs?: number;
  /** Keys read again in the background after this long. */
  refreshMs?: number;
  /** The only accepted `iss` (JWT_ISSUER). */
  issuer?: string;
  /** The only accepted `aud` (JWT_AUDIENCE). */
  audience?: string;
  /** Accepted clock difference for exp and nbf. */
  clockToleranceSeconds?: number;
  /** Verified tokens kept, so the hot path does not re-check the same signature. */
  cacheSize?: number;
  /** Where a failed JWKS load is reported (the keys in hand stay in use). */
  onLoadError?: (err: Error) => void;
}

/** Longer tokens are refused before any parsing. */
export const MAX_TOKEN_LENGTH = 4096;
/** User ids: what fits a Redis key and a log line without escaping. */
export const USER_ID_PATTERN = /^[A-Za-z0-9_.@:-]{1,128}$/;

type Verify = (token: string) => Record<string, unknown>;

/** The protected header of a compact JWT, or undefined if it is not one. */
function jwtHeader(token: string): Record<string, unknown> | undefined {
  const dot = token.indexOf('.');
  if (dot <= 0) return undefined;
  try {
    const header: unknown = JSON.parse(Buffer.from(token.slice(0, dot), 'base64url').toString('utf8'));
    return header !== null && typeof header === 'object' ? (header as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Verifies bearer tokens against the public keys of a JWKS. UNAUTHENTICATED for: a token over
 * MAX_TOKEN_LENGTH, anything but a well-formed ES256 JWT (HS256, alg none and every other
 * algorithm included), a kid not in the JWKS, a bad signature, another `iss` or `aud`, a missing or
 * passed `exp`, an `nbf` still ahead, a missing or malformed `sub`. Clock skew: 5 s by default on
 * exp and nbf. Verified tokens are cached until they expire or their key leaves the JWKS.
 * See docs/identity.md.
 */
export class TokenVerifier {
  /**
   * One fast-jwt verifier per kid: fast-jwt verifies synchronously with node:crypto; jose's
   * WebCrypto path cost ~3x the CPU per first-seen token (an async thread-pool job each).
   */
  private verifiers = new Map<string, Verify>();
  private readonly tolerance: number;
  private readonly cache: LRUCache<string, { identity: Identity; expMs: number; kid: string }>;
  private loadedAtMs = -Infinity;
  private loading: Promise<void> | undefined;
  /** Verifications answered from the cache and by a full signature check, for metrics and tests. */
  readonly stats = { cacheHits: 0, verified: 0 };

  constructor(private readonly opts: TokenVerifierOptions) {
    if (!opts.jwks && !opts.loadJwks) throw new Error('TokenVerifier needs jwks or loadJwks');
    this.tolerance = opts.clockToleranceSeconds ?? 5;
    if (opts.jwks) this.setKeys(opts.jwks);
    const max = opts.cacheSize ?? 100_000;
    // Bounded by bytes too: 100,000 tokens of a typical 300 bytes, not of MAX_TOKEN_LENGTH.
    this.cache = new LRUCache({ max, maxSize: max * 512, sizeCalculation: (_v, token) => token.length });
  }

  /** Replaces the accepted keys: tokens of a key no longer present fail from now on, cached or not. */
  setKeys(jwks: Jwks): void {
    const verifiers = new Map<string, Verify>();
    for (const jwk of jwks.keys) {
      const pem = createPublicKey({ key: { ...jwk } as JsonWebKey, format: 'jwk' }).export({
        type: 'spki',
        format: 'pem',
      });
      verifiers.set(
        jwk.kid,
        createVerifier({
          key: pem.toString(),
          algorithms: [TOKEN_ALGORITHM],
          allowedIss: this.opts.issuer ?? DEFAULT_JWT_ISSUER,
          allowedAud: this.opts.audience ?? DEFAULT_JWT_AUDIENCE,
          clockTolerance: this.tolerance * 1000,
          requiredClaims: ['sub', 'exp', 'iss', 'aud'],
          cache: false,
        }),
      );
    }
    this.verifiers = verifiers;
    this.loadedAtMs = Date.now();
  }

  /** The kids accepted now. */
  get kids(): string[] {
    return [...this.verifiers.keys()];
  }

  /** Loads the keys again (at most once at a time); a failure keeps the keys in hand. */
  async reload(): Promise<void> {
    const load = this.opts.loadJwks;
    if (!load) return;
    this.loading ??= load()
      .then((jwks) => this.setKeys(jwks))
      .catch((err: Error) => {
        // Not retried at once: the next attempt waits minReloadMs like any other.
        this.loadedAtMs = Date.now();
        this.opts.onLoadError?.(err);
      })
      .finally(() => (this.loading = undefined));
    await this.loading;
  }

  /** The verifier of `kid`, or undefined; a known kid never waits (the hot path stays synchronous). */
  private verifierOf(kid: string): Verify | Promise<Verify | undefined> | undefined {
    const age = Date.now() - this.loadedAtMs;
    const found = this.verifiers.get(kid);
    if (!this.opts.loadJwks) return found;
    if (found) {
      if (age > (this.opts.refreshMs ?? 300_000)) void this.reload();
      return found;
    }
    if (age <= (this.opts.minReloadMs ?? 10_000)) return undefined;
    return this.reload().then(() => this.verifiers.get(kid));
  }

  /** Verifies a raw JWT; throws UNAUTHENTICATED saying why. */
  async verify(token: string): Promise<Identity> {
    const hit = this.cache.get(token);
    if (hit) {
      if (Date.now() < hit.expMs + this.tolerance * 1000 && this.verifiers.has(hit.kid)) {
        this.stats.cacheHits++;
        return hit.identity;
      }
      this.cache.delete(token);
    }
    if (token.length > MAX_TOKEN_LENGTH) throw unauthenticated('token too long');
    const header = jwtHeader(token);
    if (!header) throw unauthenticated('invalid token (malformed)');
    if (header['alg'] !== TOKEN_ALGORITHM) throw unauthenticated(`invalid token (alg must be ${TOKEN_ALGORITHM})`);
    const kid = header['kid'];
    if (typeof kid !== 'string') throw unauthenticated('invalid token (no kid)');
    const known = this.verifierOf(kid);
    const verifier = typeof known === 'function' || known === undefined ? known : await known;
    if (!verifier) throw unauthenticated('invalid token (unknown kid)');
    let payload: Record<string, unknown>;
    try {
      payload = verifier(token);
    } catch (err) {
      if (err instanceof TokenError && err.code === TokenError.codes.expired) throw unauthenticated('token expired');
      if (err instanceof TokenError) throw unauthenticated(`invalid token (${err.code})`);
      throw unauthenticated('invalid token');
    }
    this.stats.verified++;
    const sub = payload['sub'];
    if (typeof sub !== 'string' || !USER_ID_PATTERN.test(sub)) throw unauthenticated('invalid token subject');
    // Anything but a known role is a plain user: a claim never grants more than it names.
    const role: Role = ROLES.find((r) => r === payload['role']) ?? 'user';
    const openedAt = payload['opened_at'];
    const identity: Identity = {
      userId: sub,
      role,
      openedAtMs: typeof openedAt === 'number' && Number.isFinite(openedAt) ? openedAt * 1000 : undefined,
    };
    const authTime = payload['auth_time'];
    if (typeof authTime === 'number' && Number.isFinite(authTime)) identity.authTimeMs = authTime * 1000;
    this.cache.set(token, { identity, expMs: Number(payload['exp']) * 1000, kid });
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

  /** The caller, who must hold a merchant token (role `merchant`). */
  async merchant(md: Metadata): Promise<Identity> {
    const id = await this.fromMetadata(md);
    if (id.role !== 'merchant') throw permissionDenied('this call needs a merchant token (role merchant)');
    return id;
  }
}

/** What a token says about its user. */
export interface TokenClaims {
  userId: string;
  role?: Role;
  ttlSeconds?: number;
  /** When the token expires, instead of `ttlSeconds` from now (a refresh capped by the session). */
  expiresAtMs?: number;
  openedAtMs?: number;
  /** When the session began (`auth_time`): kept unchanged by every refresh. */
  authTimeMs?: number;
  /** Extra claims, e.g. for tests of refused tokens (they may override iss, aud and exp). */
  claims?: Record<string, unknown>;
}

export interface TokenSignerOptions {
  /** PKCS#8 or SEC1 PEM of an EC P-256 private key (JWT_PRIVATE_KEY_FILE). */
  privateKeyPem: string;
  /** The header's kid; defaults to the key's JWK thumbprint, which is what `keys generate` publishes. */
  kid?: string;
  issuer?: string;
  audience?: string;
}

/** Issues ES256 tokens with one private key; account-svc's IssueToken, the operator's CLI and tests. */
export class TokenSigner {
  readonly kid: string;
  private readonly signer: (payload: Record<string, unknown>) => string;

  constructor(private readonly opts: TokenSignerOptions) {
    this.kid = opts.kid ?? publicJwkOf(opts.privateKeyPem).kid;
    this.signer = createSigner({ key: opts.privateKeyPem, algorithm: TOKEN_ALGORITHM, kid: this.kid });
  }

  /** A signed token for `c.userId`, valid `ttlSeconds` (3600 by default). */
  async sign(c: TokenClaims): Promise<string> {
    const payload: Record<string, unknown> = {
      iss: this.opts.issuer ?? DEFAULT_JWT_ISSUER,
      aud: this.opts.audience ?? DEFAULT_JWT_AUDIENCE,
      sub: c.userId,
      exp:
        c.expiresAtMs !== undefined
          ? Math.floor(c.expiresAtMs / 1000)
          : Math.floor(Date.now() / 1000) + (c.ttlSeconds ?? 3600),
    };
    if (c.role && c.role !== 'user') payload['role'] = c.role;
    // Rounded up: an account opened in the same second as a campaign's start never counts as
    // opened before it (the claim is in seconds, the start in milliseconds).
    if (c.openedAtMs !== undefined) payload['opened_at'] = Math.ceil(c.openedAtMs / 1000);
    // Rounded down: the session bound counts from no later than the sign-in.
    if (c.authTimeMs !== undefined) payload['auth_time'] = Math.floor(c.authTimeMs / 1000);
    return this.signer({ ...payload, ...c.claims });
  }
}

/** Where a verifier's keys come from; what `IdentityEnv` parses. */
export interface VerifierKeysOptions {
  jwksFile?: string | undefined;
  jwksUrl?: string | undefined;
  issuer: string;
  audience: string;
  onLoadError?: (err: Error) => void;
}

/** account-svc's JWKS listener on the loopback: the key source of a dev run given no keys. */
export const DEV_JWKS_URL = 'http://127.0.0.1:50062/.well-known/jwks.json';

/**
 * A TokenVerifier over JWT_JWKS_FILE (read now, so a bad file stops the start, and again on an
 * unknown kid) or JWT_JWKS_URL (fetched at the first token: account-svc may start later).
 */
export function createTokenVerifier(o: VerifierKeysOptions): TokenVerifier {
  const common = { issuer: o.issuer, audience: o.audience, onLoadError: o.onLoadError };
  if (o.jwksFile) {
    const file = o.jwksFile;
    return new TokenVerifier({ ...common, jwks: readJwksFile(file), loadJwks: async () => readJwksFile(file) });
  }
  const url = o.jwksUrl ?? DEV_JWKS_URL;
  return new TokenVerifier({ ...common, loadJwks: () => fetchJwks(url), minReloadMs: 1000 });
}

/** The identity variables a main parsed with `IdentityEnv`. */
export interface IdentitySettings {
  JWT_JWKS_FILE?: string | undefined;
  JWT_JWKS_URL?: string | undefined;
  JWT_ISSUER: string;
  JWT_AUDIENCE: string;
}

/** A main's verifier: its JWKS file or URL, else (REDPACKET_DEV=1 only) a local account-svc's. */
export function verifierFromEnv(env: IdentitySettings, log: Pick<Logger, 'warn'>): TokenVerifier {
  if (!env.JWT_JWKS_FILE && !env.JWT_JWKS_URL)
    log.warn({ jwksUrl: DEV_JWKS_URL }, 'REDPACKET_DEV=1 and no JWT_JWKS_FILE or JWT_JWKS_URL: development keys only');
  return createTokenVerifier({
    jwksFile: env.JWT_JWKS_FILE,
    jwksUrl: env.JWT_JWKS_URL,
    issuer: env.JWT_ISSUER,
    audience: env.JWT_AUDIENCE,
    onLoadError: (err) => log.warn({ err: err.message }, 'JWKS not loaded; keeping the keys in hand'),
  });
}

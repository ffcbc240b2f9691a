/** Helpers for the tests of every workspace (imported as '@redpacket/lib/testing'). */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Metadata, type CallOptions, type ClientUnaryCall, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { Cluster, Redis } from 'ioredis';
import { createSigner } from 'fast-jwt';
import { TokenSigner, TokenVerifier, type TokenClaims } from './auth.js';
import { DEFAULT_REDIS_URL } from './config.js';
import { keys } from './keys.js';
import { registry } from './metrics.js';
import { deleteCampaign } from './redis.js';
import {
  DEFAULT_JWT_AUDIENCE,
  DEFAULT_JWT_ISSUER,
  generateSigningKey,
  readJwksFile,
  readPrivateKeyFile,
  writeKeyPair,
  type Jwks,
} from './signing-keys.js';

export const TEST_REDIS_URL = process.env['REDIS_URL'] ?? DEFAULT_REDIS_URL;
export const TEST_MYSQL_URL = process.env['MYSQL_URL'] ?? 'mysql://root@127.0.0.1:3306/redpacket';
export const TEST_AMQP_URL = process.env['AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672';

/** The key pair of this test process, in a temp dir: signs like account-svc, verifies like every service. */
export interface TestSigner {
  /** A token of this key, like account-svc's IssueToken. */
  sign(c: TokenClaims): Promise<string>;
  signer: TokenSigner;
  kid: string;
  jwks: Jwks;
  jwksFile: string;
  privateKeyFile: string;
  /** The variables a child service needs to sign (account-svc) and verify with this key. */
  env: { JWT_PRIVATE_KEY_FILE: string; JWT_JWKS_FILE: string };
  /** A fresh verifier holding this key only. */
  verifier(): TokenVerifier;
}

let shared: TestSigner | undefined;

/** The process's test key pair, made at the first call and removed when the process exits. */
export function testSigner(): TestSigner {
  if (shared) return shared;
  const dir = mkdtempSync(join(tmpdir(), 'redpacket-test-keys-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const files = writeKeyPair(dir);
  const signer = new TokenSigner({ privateKeyPem: readPrivateKeyFile(files.privateKeyFile) });
  const jwks = readJwksFile(files.jwksFile);
  shared = {
    sign: (c) => signer.sign(c),
    signer,
    kid: files.kid,
    jwks,
    jwksFile: files.jwksFile,
    privateKeyFile: files.privateKeyFile,
    env: { JWT_PRIVATE_KEY_FILE: files.privateKeyFile, JWT_JWKS_FILE: files.jwksFile },
    verifier: () => new TokenVerifier({ jwks }),
  };
  return shared;
}

/**
 * Tokens for `userId` that every verifier must refuse with UNAUTHENTICATED, by what is wrong:
 * HS256 with a guessable secret (the old development one), alg none, a key not in the JWKS (with
 * the test key's kid and with its own), another issuer, another audience, expired.
 */
export async function refusedTokens(userId: string): Promise<Record<string, string>> {
  const good = testSigner();
  const hmac = createSigner({ algorithm: 'HS256', key: 'dev-secret-change-me-0123456789', kid: good.kid });
  const none = createSigner({ algorithm: 'none', kid: good.kid });
  const payload = { sub: userId, iss: DEFAULT_JWT_ISSUER, aud: DEFAULT_JWT_AUDIENCE, role: 'admin' };
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const stranger = generateSigningKey().privateKeyPem;
  return {
    hs256: hmac({ ...payload, exp }),
    algNone: none({ ...payload, exp }),
    unknownKey: await new TokenSigner({ privateKeyPem: stranger }).sign({ userId }),
    unknownKeyKnownKid: await new TokenSigner({ privateKeyPem: stranger, kid: good.kid }).sign({ userId }),
    otherIssuer: await good.sign({ userId, claims: { iss: 'someone-else' } }),
    otherAudience: await good.sign({ userId, claims: { aud: 'another-mesh' } }),
    expired: await good.sign({ userId, claims: { exp: Math.floor(Date.now() / 1000) - 600 } }),
  };
}

/** The test Redis's URL with database `db` instead of its own: a database of one test file's. */
export function testRedisDb(db: number): string {
  return `${TEST_REDIS_URL.replace(/\/\d*$/, '')}/${db}`;
}

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

/** What a unary call returned, with the server's trailing metadata. */
export interface CallReply<Res> {
  /** The metadata the server sent with the status (trailers), of an answer or an error alike. */
  trailers: Metadata;
  response?: Res;
  error?: ServiceError;
}

/** Calls like call(), but resolves with the response or the error and the trailing metadata. */
export function callWithTrailers<Req, Res>(
  method: UnaryMethod<Req, Res>,
  self: object,
  req: Req,
  md: Metadata,
): Promise<CallReply<Res>> {
  return new Promise((resolve) => {
    let result: { response?: Res; error?: ServiceError } = {};
    const c = method.call(self, req, md, {}, (error, response) => {
      result = error ? { error } : { response };
    }) as ClientUnaryCall;
    // grpc-js runs the callback first, then emits 'status' with the trailers
    c.on('status', (s: StatusObject) => resolve({ trailers: s.metadata, ...result }));
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

export { pollUntil } from './poll.js';

/** Deletes every key matching a pattern (SCAN, never KEYS), on every master of a cluster. */
export async function deleteKeys(redis: Redis | Cluster, pattern: string): Promise<number> {
  if (redis instanceof Cluster) {
    const counts = await Promise.all(redis.nodes('master').map((node) => deleteKeys(node, pattern)));
    return counts.reduce((a, b) => a + b, 0);
  }
  let n = 0;
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    // One key a DEL: a cluster node refuses a DEL over several slots.
    if (found.length) n += (await Promise.all(found.map((k) => redis.del(k)))).reduce((a, b) => a + b, 0);
  } while (cursor !== '0');
  return n;
}
/**
 * Removes one test campaign from Redis (deleteCampaign), its shape read from its meta; a campaign
 * whose meta is gone (a test of lost state) is removed by SCAN of its hash tags instead.
 */
export async function dropCampaignKeys(redis: Redis | Cluster, campaignId: string): Promise<void> {
  const [batches, pools] = await redis.hmget(keys.meta(campaignId), 'batches', 'pools');
  if (batches) return deleteCampaign(redis, campaignId, { batches: Number(batches), subPools: Number(pools ?? 1) });
  await deleteKeys(redis, `rp:{${campaignId}}:*`);
  await deleteKeys(redis, `rp:{${campaignId}.*}:*`);
  await Promise.all([redis.zrem(keys.campaigns, campaignId), redis.zrem(keys.liveCampaigns, campaignId)]);
}
/**
 * The sum of the samples of `name` in this process's registry whose labels include `labels`
 * (collected as a scrape would: collect() callbacks run). A histogram's series are asked for as
 * name_count, name_sum or name_bucket; a metric not registered fails the test.
 */
export async function metricValue(name: string, labels: Record<string, string | number> = {}): Promise<number> {
  const base =
    /_(count|sum|bucket)$/.test(name) && !registry.getSingleMetric(name) ? name.replace(/_[a-z]+$/, '') : name;
  const metric = registry.getSingleMetric(base);
  if (!metric) throw new Error(`metric ${base} is not registered`);
  const { values } = await metric.get();
  return values
    .filter((v) => ((v as { metricName?: string }).metricName ?? base) === name)
    .filter((v) =>
      Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === String(want)),
    )
    .reduce((a, v) => a + v.value, 0);
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/;
const LABEL_PAIR = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/y;

/**
 * Parses Prometheus text exposition (version 0.0.4) strictly: every line is a comment, empty,
 * or `name{labels} value`; anything else throws, naming the line.
 */
export function parsePrometheusText(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = SAMPLE_LINE.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    const body = m[2] ?? '';
    LABEL_PAIR.lastIndex = 0;
    while (LABEL_PAIR.lastIndex < body.length) {
      const at = LABEL_PAIR.lastIndex;
      const p = LABEL_PAIR.exec(body);
      if (!p || p.index !== at) throw new Error(`bad labels in Prometheus sample line: ${line}`);
      labels[p[1] as string] = (p[2] as string).replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    const value = Number(m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : m[3]);
    if (Number.isNaN(value) && m[3] !== 'NaN') throw new Error(`bad value in Prometheus sample line: ${line}`);
    out.push({ name: m[1] as string, labels, value });
  }
  return out;
}

/** The sum of the parsed samples named `name` whose labels include `labels`. */
export function sampleSum(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}

export {
  startRedisServer,
  type LocalRedisServer as TestRedisServer,
  type LocalRedisOptions as TestRedisOptions,
} from './redis-server.js';

/** Resolves with a process's exit code once it has exited (at once if it already has). */
export function exitCodeOf(proc: ChildProcess): Promise<number | null> {
  return new Promise((r) =>
    proc.exitCode !== null || proc.signalCode !== null ? r(proc.exitCode) : proc.once('exit', (code) => r(code)),
  );
}

/**
 * The pids of workers 1..n of a main started with WORKERS=n, in order, from the primary's
 * `"worker":<n>,"pid":<pid> ... worker listening` line for each (each awaited up to `timeoutMs`).
 */
export async function listeningWorkerPids(
  child: { waitFor(re: RegExp, timeoutMs?: number): Promise<string> },
  n: number,
  timeoutMs = 30_000,
): Promise<number[]> {
  const pids: number[] = [];
  for (let w = 1; w <= n; w++) {
    const line = await child.waitFor(new RegExp(`"worker":${w},"pid":\\d+.*worker listening`), timeoutMs);
    pids.push((JSON.parse(line) as { pid: number }).pid);
  }
  return pids;
}

/** A main refusing its environment: the "bad environment variable" line it logs, then its exit code. */
export async function refusal(child: {
  proc: ChildProcess;
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
}): Promise<{ line: string; exitCode: number | null }> {
  const line = await child.waitFor(/bad environment variable/);
  return { line, exitCode: await exitCodeOf(child.proc) };
}

export * from './testing-cluster.js';
export * from './testing-tls.js';

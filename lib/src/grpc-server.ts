/** gRPC server plumbing: typed handlers behind one error path, health, reflection, shutdown. */
import { readFileSync } from 'node:fs';
import {
  Metadata,
  Server,
  status,
  type handleUnaryCall,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServiceError as GrpcServiceError,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { loadFileDescriptorSetFromBuffer } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { descriptorSetPath } from '@redpacket/proto';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import type { Logger } from 'pino';
import { toGrpcError } from './errors.js';
import { healthServing, rpcSeconds, rpcTotal } from './metrics.js';
import { withTimeout } from './poll.js';
import { REQUEST_ID_HEADER, requestIdOf } from './request-id.js';
import { serverCredentials, type TlsMaterial } from './tls.js';

/** A unary handler as plain async code: return the response or throw. */
export type AsyncUnary<Req, Res> = (request: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res>;

/** The async form of a generated `XServiceServer` interface; streaming methods stay raw. */
export type AsyncService<S> = {
  [K in keyof S as string extends K ? never : K]: S[K] extends handleUnaryCall<infer Req, infer Res>
    ? AsyncUnary<Req, Res>
    : S[K];
};

/** The pino level of a method's access log line ('silent' = none). */
export type AccessLogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'silent';

export interface ImplementOptions {
  /**
   * Access log level per method, by handler name (default info): e.g. `{ grab: 'debug' }` keeps
   * the hot path's lines out of an info log, and costs only pino's level check when disabled.
   */
  accessLog?: Record<string, AccessLogLevel>;
}

/**
 * A method whose access line is below info is a hot path (the grab, the rate limit decision): its
 * reply does not carry the request id (hotPath). Through Envoy the caller has the id from Envoy's
 * own response header; called directly, it has the one it sent, and a generated one would match
 * no line of an info log.
 */
const hotPath = (level: AccessLogLevel): boolean => level === 'debug' || level === 'trace' || level === 'silent';

/**
 * Writes a call's access log line: method, status code, duration, request id, peer; never the
 * metadata (so never the authorization header or a token).
 */
function accessLine(
  log: Logger,
  level: Exclude<AccessLogLevel, 'silent'>,
  method: string,
  code: string,
  seconds: number,
  call: { metadata: Metadata; getPeer(): string },
): void {
  log[level](
    { method, code, ms: Math.round(seconds * 1e6) / 1e3, requestId: requestIdOf(call), peer: call.getPeer() },
    'rpc',
  );
}

/**
 * The call's request id as trailing metadata (`x-request-id`), sent with the status of an answer or
 * an error alike, so a client can match a reply with its access log line. In the trailers, not the
 * initial metadata: initial metadata of our own sent ahead of the answer cost 20-27 µs of CPU a
 * call (a rate limit decision 162-183 µs instead of 141-156, alternated runs of
 * `BENCH_SCENARIOS=over-limit npm run bench:rls`); trailers are sent with every status anyway.
 */
function idTrailer(call: { metadata: Metadata }, md = new Metadata()): Metadata {
  md.set(REQUEST_ID_HEADER, requestIdOf(call));
  return md;
}

/**
 * Adapts async handlers to a generated service interface: every unary result or throw
 * goes through toGrpcError, so no handler can leak a stack trace or forget a callback.
 * Each unary call gets a request id (requestIdOf), sent back to the caller as `x-request-id`
 * trailing metadata (but by a hot path: hotPath), and, when it ends, one access log line at the
 * method's level; a client-streaming call gets both when it answers.
 */
export function implement<S extends UntypedServiceImplementation>(
  definition: ServiceDefinition,
  handlers: AsyncService<S>,
  log: Logger,
  opts: ImplementOptions = {},
): S {
  const out: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(definition)) {
    const fn = (handlers as Record<string, unknown>)[name];
    if (typeof fn !== 'function') throw new Error(`handler ${name} missing`);
    const level = opts.accessLog?.[name] ?? 'info';
    if (method.requestStream && !method.responseStream) {
      out[name] = clientStreamWithAccessLog(fn as ClientStreamHandler, log, level, method.path);
      continue;
    }
    if (method.requestStream || method.responseStream) {
      out[name] = fn;
      continue;
    }
    const handler = fn as AsyncUnary<unknown, unknown>;
    const echo = !hotPath(level);
    const latency = rpcSeconds.labels(method.path);
    const ok = rpcTotal.labels(method.path, 'OK');
    out[name] = (
      call: ServerUnaryCall<unknown, unknown>,
      callback: (e: unknown, r?: unknown, trailer?: Metadata) => void,
    ) => {
      // The child's timer returns the seconds it observed (its typings say void; the code and the
      // parent's typings say number), reused for the access log line.
      const done = latency.startTimer() as () => number;
      handler(call.request, call).then(
        (res) => {
          const seconds = done();
          ok.inc();
          // The level check first: a disabled level (the grab at info) builds no object.
          if (level !== 'silent' && log.isLevelEnabled(level)) accessLine(log, level, method.path, 'OK', seconds, call);
          callback(null, res, echo ? idTrailer(call) : undefined);
        },
        (err: unknown) => {
          const seconds = done();
          const e = toGrpcError(err, log, method.path, requestIdOf(call));
          const code = status[e.code ?? status.UNKNOWN];
          rpcTotal.inc({ method: method.path, code });
          if (level !== 'silent' && log.isLevelEnabled(level)) accessLine(log, level, method.path, code, seconds, call);
          if (echo) e.metadata = idTrailer(call, e.metadata);
          callback(e);
        },
      );
    };
  }
  return out as S;
}

type ClientStreamHandler = (
  call: ServerReadableStream<unknown, unknown>,
  callback: (e: Partial<GrpcServiceError> | null, r?: unknown, trailer?: Metadata) => void,
) => void;

function clientStreamWithAccessLog(
  fn: ClientStreamHandler,
  log: Logger,
  level: AccessLogLevel,
  path: string,
): ClientStreamHandler {
  return (call, callback) => {
    const started = performance.now();
    fn(call, (err, res) => {
      if (level !== 'silent' && log.isLevelEnabled(level)) {
        const code = err ? status[err.code ?? status.UNKNOWN] : 'OK';
        accessLine(log, level, path, code, (performance.now() - started) / 1000, call);
      }
      if (err) {
        err.metadata = idTrailer(call, err.metadata);
        callback(err);
      } else callback(null, res, idTrailer(call));
    });
  };
}

export interface ServiceEntry {
  /** Fully qualified name for the health check, e.g. "redpacket.v1.GrabService". */
  name: string;
  definition: ServiceDefinition;
  implementation: UntypedServiceImplementation;
}

export interface RunningServer {
  server: Server;
  port: number;
  health: HealthImplementation;
  /** Sets every service's (and the overall "") health status. */
  setServing(status: ServingStatus): void;
  /** Stops accepting calls, lets in-flight ones finish, forces after the deadline. */
  shutdown(deadlineMs?: number): Promise<void>;
}

let reflectionPackage: ReturnType<typeof loadFileDescriptorSetFromBuffer> | undefined;

/** Binds the services plus grpc.health.v1 and server reflection on host:port (port 0 = any). */
export async function startServer(opts: {
  services: ServiceEntry[];
  host?: string;
  port: number;
  log: Logger;
  /**
   * Whether the service's dependencies answer (Redis, MySQL, RabbitMQ): polled every
   * `readyEveryMs`; health is SERVING only while it says true, and NOT_SERVING while draining.
   */
  ready?: () => Promise<boolean>;
  readyEveryMs?: number;
  /** mTLS: serve TLS and require a client certificate signed by `tls.ca`; plaintext without. */
  tls?: TlsMaterial;
}): Promise<RunningServer> {
  const server = new Server({
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
    'grpc.keepalive_permit_without_calls': 1,
    // channelz bookkeeping cost ~5% of the grab path's CPU in the profile; nothing here reads it
    'grpc.enable_channelz': 0,
  });
  for (const s of opts.services) server.addService(s.definition, s.implementation);
  const names = ['', ...opts.services.map((s) => s.name)];
  const health = new HealthImplementation(Object.fromEntries(names.map((n) => [n, 'NOT_SERVING'])));
  health.addToServer(server);
  reflectionPackage ??= loadFileDescriptorSetFromBuffer(readFileSync(descriptorSetPath));
  new ReflectionService(reflectionPackage).addToServer(server);

  const host = opts.host ?? '0.0.0.0';
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${opts.port}`, serverCredentials(opts.tls), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const setServing = (st: ServingStatus): void => {
    names.forEach((n) => health.setStatus(n, st));
    healthServing.set(st === 'SERVING' ? 1 : 0);
  };
  let draining = false;
  let serving: ServingStatus = 'SERVING';
  const probe = async (): Promise<void> => {
    if (!opts.ready) return;
    // A check that fails, or does not answer before the next one is due, counts as not ready.
    const ok = await withTimeout(opts.ready(), opts.readyEveryMs ?? 1000, 'readiness').catch(() => false);
    const next: ServingStatus = ok ? 'SERVING' : 'NOT_SERVING';
    if (draining || next === serving) return;
    serving = next;
    setServing(next);
    opts.log[ok ? 'info' : 'warn']({ health: next }, ok ? 'dependencies answer again' : 'a dependency does not answer');
  };
  setServing('SERVING');
  await probe();
  const poller = opts.ready ? setInterval(() => void probe(), opts.readyEveryMs ?? 1000) : undefined;
  poller?.unref();
  opts.log.info({ port, tls: opts.tls ? 'mtls' : 'plaintext' }, 'gRPC server listening');

  const shutdown = async (deadlineMs = 10_000): Promise<void> => {
    draining = true;
    if (poller) clearInterval(poller);
    setServing('NOT_SERVING');
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        opts.log.warn('shutdown deadline reached; cancelling in-flight calls');
        server.forceShutdown();
        resolve();
      }, deadlineMs);
      timer.unref();
      server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  };
  return { server, port, health, setServing, shutdown };
}

/** Runs `stop` once on SIGTERM or SIGINT, then exits. */
export function onShutdownSignal(log: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', handler);
  process.once('SIGINT', handler);
}

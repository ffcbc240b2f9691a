/** The one error path of every service: ServiceError for expected failures, INTERNAL for the rest. */
import { Metadata, status, type ServiceError as GrpcServiceError } from '@grpc/grpc-js';
import type { Logger } from 'pino';

/** An error whose code and message are meant for the client. */
export class ServiceError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
    this.name = 'ServiceError';
  }
}

export const invalidArgument = (field: string, why: string): ServiceError =>
  new ServiceError(status.INVALID_ARGUMENT, `${field}: ${why}`);
export const notFound = (what: string): ServiceError => new ServiceError(status.NOT_FOUND, `${what} not found`);
export const unauthenticated = (why: string): ServiceError => new ServiceError(status.UNAUTHENTICATED, why);
export const permissionDenied = (why: string): ServiceError => new ServiceError(status.PERMISSION_DENIED, why);
export const failedPrecondition = (why: string): ServiceError => new ServiceError(status.FAILED_PRECONDITION, why);

/** Network errors of a connection to a dependency. */
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTCONN']);
/** Redis replies and ioredis errors of a server away, loading or failing over: worth a retry. */
const REDIS_AWAY =
  /^(LOADING|CLUSTERDOWN|TRYAGAIN|READONLY|MASTERDOWN|NOREPLICAS)\b|^Connection is closed|^Stream isn't writeable|^Command timed out|^Failed to refresh slots cache|^Reached the max retries per request limit/;

/**
 * True for a failure of a dependency that is away for now (Redis restarting, loading its AOF,
 * failing over; a connection refused or reset), as opposed to a bug: the client should retry.
 */
export function isDependencyAway(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown; name?: unknown };
  if (typeof e !== 'object' || e === null) return false;
  if (typeof e.code === 'string' && CONNECTION_CODES.has(e.code)) return true;
  if (e.name === 'MaxRetriesPerRequestError' || e.name === 'ClusterAllFailedError') return true;
  return typeof e.message === 'string' && REDIS_AWAY.test(e.message);
}

/**
 * Turns anything thrown by a handler into what the client may see. A ServiceError keeps its
 * code and message; a dependency that is away for now becomes UNAVAILABLE (retry; a grab retried
 * with the same request_id returns the same result); anything else is logged in full and becomes
 * a bare INTERNAL.
 */
export function toGrpcError(err: unknown, log: Logger, method: string, requestId?: string): Partial<GrpcServiceError> {
  if (err instanceof ServiceError) {
    return { code: err.code, details: err.message, metadata: new Metadata() };
  }
  if (isDependencyAway(err)) {
    log.warn({ err: (err as Error).message, method, requestId }, 'dependency unavailable');
    return {
      code: status.UNAVAILABLE,
      details: 'a dependency is unavailable for now; retry (a grab: with the same request_id)',
      metadata: new Metadata(),
    };
  }
  log.error({ err, method, requestId }, 'unhandled error in handler');
  return { code: status.INTERNAL, details: 'internal error', metadata: new Metadata() };
}

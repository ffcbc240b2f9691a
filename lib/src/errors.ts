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

/**
 * Turns anything thrown by a handler into what the client may see. A ServiceError keeps its
 * code and message; anything else is logged in full and becomes a bare INTERNAL.
 */
export function toGrpcError(err: unknown, log: Logger, method: string, requestId?: string): Partial<GrpcServiceError> {
  if (err instanceof ServiceError) {
    return { code: err.code, details: err.message, metadata: new Metadata() };
  }
  log.error({ err, method, requestId }, 'unhandled error in handler');
  return { code: status.INTERNAL, details: 'internal error', metadata: new Metadata() };
}

/** RedPacketError: what every failed call of the client rejects with, one shape for all services. */
import { status, type ServiceError } from '@grpc/grpc-js';
import { REQUEST_ID_HEADER } from './request-id.js';

/** A failed call: the gRPC status, the server's message and the request id to grep the logs for. */
export class RedPacketError extends Error {
  /** The gRPC status code (a `status` value of @grpc/grpc-js). */
  readonly code: status;
  /** The status's name, e.g. 'INVALID_ARGUMENT'. */
  readonly codeName: string;
  /** The server's message (for INVALID_ARGUMENT it names the field). */
  readonly details: string;
  /** The x-request-id the server answered with, else the one the client sent. */
  readonly requestId: string;
  /** The full method path, e.g. '/redpacket.v1.GrabService/Grab'. */
  readonly method: string;

  constructor(opts: { code: status; details: string; requestId: string; method: string; cause?: unknown }) {
    const codeName = status[opts.code] ?? `CODE_${opts.code}`;
    super(`${opts.method} failed: ${codeName}: ${opts.details}`, { cause: opts.cause });
    this.name = 'RedPacketError';
    this.code = opts.code;
    this.codeName = codeName;
    this.details = opts.details;
    this.requestId = opts.requestId;
    this.method = opts.method;
  }
}

/**
 * Wraps a grpc-js error. The server sends its request id in the trailers of most calls; a hot path
 * (the grab) does not, and then the id the client sent is the one the server used and logged.
 */
export function toRedPacketError(err: ServiceError, method: string, sentRequestId: string): RedPacketError {
  const echoed = err.metadata?.get(REQUEST_ID_HEADER)[0];
  return new RedPacketError({
    code: err.code,
    details: err.details,
    requestId: typeof echoed === 'string' && echoed !== '' ? echoed : sentRequestId,
    method,
    cause: err,
  });
}

/** The CLI's one error path: every failure becomes a CliError with a message and an exit code. */
import { status, type ServiceError } from '@grpc/grpc-js';
import { RedPacketError } from '@redpacket/client';

/** Exit codes, documented in docs/operator.md; scripts may rely on them. */
export const Exit = {
  ok: 0,
  failure: 1,
  usage: 2,
  unavailable: 3,
  notFound: 4,
  denied: 5,
  precondition: 6,
  inconsistent: 7,
} as const;

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = Exit.failure,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export const usageError = (message: string): CliError => new CliError(message, Exit.usage);

function isServiceError(err: unknown): err is ServiceError {
  return typeof err === 'object' && err !== null && 'code' in err && 'details' in err && 'metadata' in err;
}

/** Turns a gRPC error from `service` at `address` into what the operator should read. */
export function fromGrpc(thrown: unknown, service: string, address: string): Error {
  // a call through @redpacket/client: its cause is the grpc-js error
  const err = thrown instanceof RedPacketError ? thrown.cause : thrown;
  if (!isServiceError(err)) return err instanceof Error ? err : new Error(String(err));
  const d = err.details;
  switch (err.code) {
    case status.UNAVAILABLE:
      return new CliError(
        `${service} is not reachable at ${address}; is it running? (${d.replace(/\.? ?Resolution note:.*$/s, '')})`,
        Exit.unavailable,
      );
    case status.DEADLINE_EXCEEDED:
      return new CliError(`${service} at ${address} did not answer in time (${d})`, Exit.unavailable);
    case status.UNIMPLEMENTED:
      return new CliError(`${service} at ${address} does not implement this call (${d})`, Exit.unavailable);
    case status.NOT_FOUND:
      return new CliError(/not found/i.test(d) ? d : `not found: ${d}`, Exit.notFound);
    case status.PERMISSION_DENIED:
      return new CliError(
        `not allowed: ${d} (give an admin token: REDPACKET_TOKEN, or JWT_PRIVATE_KEY_FILE to sign one)`,
        Exit.denied,
      );
    case status.UNAUTHENTICATED:
      return new CliError(
        `not authenticated: ${d} (check REDPACKET_TOKEN or JWT_PRIVATE_KEY_FILE and the verifiers' JWKS)`,
        Exit.denied,
      );
    case status.INVALID_ARGUMENT:
      return new CliError(`invalid request: ${d}`, Exit.usage);
    case status.FAILED_PRECONDITION:
      return new CliError(`not possible now: ${d}`, Exit.precondition);
    default:
      return new CliError(`${service} failed: ${status[err.code] ?? err.code}: ${d}`, Exit.failure);
  }
}

/** The gRPC status code of an error, if it is one. */
export const grpcCode = (err: unknown): status | undefined =>
  err instanceof RedPacketError ? err.code : isServiceError(err) ? err.code : undefined;

/**
 * Request ids: the `x-request-id` Envoy sets at the edge, carried in gRPC metadata through every
 * service (and, for a win, through the outbox and the WinEvent to gift-svc), so one grep over the
 * logs finds a request everywhere it went. implement() assigns one to every call; handlers read it
 * with requestIdOf(call) and pass it on explicitly: no AsyncLocalStorage, which on Node 20 turns
 * on async hooks for every promise of the process (grpc-js's and ioredis's on the grab path too).
 */
import { randomUUID } from 'node:crypto';
import type { Metadata } from '@grpc/grpc-js';

/** The metadata key (gRPC metadata keys are lower case; Envoy's header is X-Request-Id). */
export const REQUEST_ID_HEADER = 'x-request-id';

/** At most 128 printable ASCII characters, no spaces: safe in a log line, a stream field, a header. */
const VALID = /^[\x21-\x7e]{1,128}$/;

/** Whether a client- or edge-supplied request id is usable as it is. */
export const isValidRequestId = (v: unknown): v is string => typeof v === 'string' && VALID.test(v);

/** The call's x-request-id if it is valid, else a fresh UUID (a bad one is ignored, never echoed). */
export function requestIdFromMetadata(md: Metadata): string {
  const v = md.get(REQUEST_ID_HEADER)[0];
  return isValidRequestId(v) ? v : randomUUID();
}

const ids = new WeakMap<object, string>();

/**
 * The request id of a call handled through implement(): the one it arrived with, or the one
 * generated for it; the same value the access log line carries. A call implement() did not see
 * gets one now (remembered, so asking twice gives the same id).
 */
export function requestIdOf(call: { metadata: Metadata }): string {
  let id = ids.get(call);
  if (id === undefined) {
    id = requestIdFromMetadata(call.metadata);
    ids.set(call, id);
  }
  return id;
}

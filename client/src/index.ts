/** @redpacket/client: a typed, promise-based gRPC client of the red packet mesh for internal apps. */
export { createRedPacketClient, DEFAULT_DEADLINE_MS } from './client.js';
export type { GrabInput, RedPacketClient, RedPacketClientOptions, TlsOptions, TokenSource } from './client.js';
export type { CallOptions, UnaryMethods } from './calls.js';
export { RedPacketError } from './errors.js';
export { DEFAULT_RETRY, isRetryable } from './retry.js';
export type { RetryOptions } from './retry.js';

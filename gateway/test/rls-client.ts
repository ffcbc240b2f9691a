/**
 * The gateway's RateLimitService as Envoy calls it, for the gateway's tests: a typed grpc-js client,
 * a ShouldRateLimit call with envoy.yaml's domain, and a real server on 127.0.0.1:0 for a Limiter.
 */
import {
  credentials,
  Metadata,
  type CallOptions,
  type ChannelOptions,
  type Client,
  type ServiceError,
} from '@grpc/grpc-js';
import { startServer, type Logger, type RunningServer } from '@redpacket/lib';
import { call } from '@redpacket/lib/testing';
import type { Limiter } from '../src/limiter.js';
import { loadRateLimitService } from '../src/rls-proto.js';
import { createGatewayServer, type RateLimitRequest, type RateLimitResponse } from '../src/server.js';
import { envoyDomain, type WireDescriptor } from './envoy-descriptors.js';

const RateLimitService = loadRateLimitService({ defaults: true });

export type RlsClient = Client & {
  ShouldRateLimit: (
    req: RateLimitRequest,
    md: Metadata,
    options: Partial<CallOptions>,
    cb: (e: ServiceError | null, r: RateLimitResponse) => void,
  ) => void;
};

/** An insecure RateLimitService client of `address` (host:port). */
export function rlsClient(address: string, options?: ChannelOptions): RlsClient {
  return new RateLimitService(address, credentials.createInsecure(), options) as unknown as RlsClient;
}

/** One ShouldRateLimit call, as Envoy makes it: envoy.yaml's domain, the given descriptors. */
export function shouldRateLimit(
  client: RlsClient,
  descriptors: WireDescriptor[],
  hitsAddend = 0,
): Promise<RateLimitResponse> {
  return call(
    client.ShouldRateLimit,
    client,
    { domain: envoyDomain(), descriptors, hits_addend: hitsAddend },
    new Metadata(),
  );
}

/** The gateway server for `limiter` on 127.0.0.1:0 and a client of it; the caller closes both. */
export async function serveLimiter(
  limiter: Limiter,
  log: Logger,
): Promise<{ server: RunningServer; client: RlsClient }> {
  const server = await startServer({
    services: createGatewayServer({ limiter, log }),
    host: '127.0.0.1',
    port: 0,
    log,
  });
  return { server, client: rlsClient(`127.0.0.1:${server.port}`) };
}

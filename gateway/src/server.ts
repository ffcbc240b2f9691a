/** createGatewayServer: envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit over a Limiter. */
import { status, type handleUnaryCall, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { implement, invalidArgument, ServiceError, type Logger, type ServiceEntry } from '@redpacket/lib';
import { isUnit, UnavailableError, type Decision, type DescriptorIn, type Limiter, type Reason } from './limiter.js';
import { loadRateLimitService, RLS_SERVICE } from './rls-proto.js';

/** RateLimitRequest as @grpc/proto-loader hands it over (keepCase, enums as strings). */
export interface RateLimitRequest {
  domain?: string;
  descriptors?: {
    entries?: { key?: string; value?: string }[];
    limit?: { requests_per_unit?: number; unit?: string } | null;
  }[];
  hits_addend?: number;
}

export interface RateLimitResponse {
  overall_code: 'OK' | 'OVER_LIMIT';
  statuses: {
    code: 'OK' | 'OVER_LIMIT';
    current_limit: { name: string; requests_per_unit: number; unit: string } | null;
    limit_remaining: number;
    duration_until_reset: { seconds: number; nanos: number } | null;
  }[];
  response_headers_to_add: { key: string; value: string }[];
  raw_body: Buffer;
}

interface RateLimitServiceServer extends UntypedServiceImplementation {
  ShouldRateLimit: handleUnaryCall<RateLimitRequest, RateLimitResponse>;
}

/** The header Envoy adds to a 429, and the body's `reason`. */
export const REASON_HEADER = 'x-redpacket-reason';

/**
 * A refusal's body: the edge's one error shape (docs/edge.md), `code` the gRPC code of a 429 as
 * the transcoder maps it, plus what a client needs to act on it.
 */
export interface RefusalBody {
  code: status.RESOURCE_EXHAUSTED;
  reason: Reason;
  message: string;
  /** When a retry can succeed: the bucket's refill, or the campaign's start. */
  retry_after_ms?: number;
  campaign_id?: string;
  /** NOT_STARTED: the campaign's start, RFC 3339. */
  opens_at?: string;
}

const MESSAGES: Record<Reason, string> = {
  RATE_LIMITED: 'too many requests; slow down',
  SOLD_OUT: 'every red packet of this campaign has been won',
  NOT_STARTED: 'this campaign has not started yet',
  ENDED: 'this campaign has ended',
};

export function toDescriptors(req: RateLimitRequest): DescriptorIn[] {
  if (!req.domain) throw invalidArgument('domain', 'must not be empty');
  if (!req.descriptors?.length) throw invalidArgument('descriptors', 'must not be empty');
  return req.descriptors.map((d, i) => {
    if (!d.entries?.length) throw invalidArgument(`descriptors[${i}].entries`, 'must not be empty');
    const unit = d.limit?.unit?.toLowerCase() ?? '';
    const limit =
      d.limit && isUnit(unit) && d.limit.requests_per_unit
        ? { requestsPerUnit: d.limit.requests_per_unit, unit }
        : undefined;
    return { entries: d.entries.map((e) => ({ key: e.key ?? '', value: e.value ?? '' })), limit };
  });
}

// Numbers, not strings, for the int64 seconds: protobufjs encodes them without parsing a Long.
const duration = (ms: number): { seconds: number; nanos: number } => ({
  seconds: Math.floor(ms / 1000),
  nanos: (ms % 1000) * 1_000_000,
});
const EMPTY = Buffer.alloc(0);

/** The wire response: a refusal carries a JSON body and headers saying why (Envoy sends them with the 429). */
export function toResponse(d: Decision): RateLimitResponse {
  const statuses = d.statuses.map((s) => ({
    code: s.code,
    current_limit: s.limit
      ? { name: s.limit.name, requests_per_unit: s.limit.requestsPerUnit, unit: s.limit.unit.toUpperCase() }
      : null,
    limit_remaining: s.remaining,
    duration_until_reset: s.limit ? duration(s.resetMs) : null,
  }));
  if (d.overall === 'OK' || !d.reason) {
    return { overall_code: d.overall, statuses, response_headers_to_add: [], raw_body: EMPTY };
  }
  const body: RefusalBody = { code: status.RESOURCE_EXHAUSTED, reason: d.reason, message: MESSAGES[d.reason] };
  if (d.campaignId) body.campaign_id = d.campaignId;
  if (d.opensAtMs !== undefined) body.opens_at = new Date(d.opensAtMs).toISOString();
  const headers = [
    { key: REASON_HEADER, value: d.reason },
    { key: 'content-type', value: 'application/json' },
  ];
  if (d.retryAfterMs > 0) {
    body.retry_after_ms = d.retryAfterMs;
    headers.push({ key: 'retry-after', value: String(Math.ceil(d.retryAfterMs / 1000)) });
  }
  return {
    overall_code: 'OVER_LIMIT',
    statuses,
    response_headers_to_add: headers,
    raw_body: Buffer.from(JSON.stringify(body)),
  };
}

export function createGatewayServer(deps: { limiter: Limiter; log: Logger }): ServiceEntry[] {
  const { limiter, log } = deps;
  const Service = loadRateLimitService();
  const implementation = implement<RateLimitServiceServer>(
    Service.service,
    {
      async ShouldRateLimit(req) {
        const descriptors = toDescriptors(req);
        try {
          return toResponse(await limiter.decide(req.domain ?? '', descriptors, req.hits_addend ?? 0));
        } catch (err) {
          if (err instanceof UnavailableError) throw new ServiceError(status.UNAVAILABLE, err.message);
          throw err;
        }
      },
    },
    log,
    // One decision per edge request: access lines only at debug.
    { accessLog: { ShouldRateLimit: 'debug' } },
  );
  return [{ name: RLS_SERVICE, definition: Service.service, implementation }];
}

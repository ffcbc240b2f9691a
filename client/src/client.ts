/** createRedPacketClient: typed promise methods over the generated stubs of all four services. */
import { randomUUID } from 'node:crypto';
import { credentials, type ChannelCredentials, type ChannelOptions } from '@grpc/grpc-js';
import {
  AccountServiceClient,
  AccountServiceService,
  AdminServiceClient,
  AdminServiceService,
  GiftServiceClient,
  GiftServiceService,
  GrabServiceClient,
  GrabServiceService,
  type GrabRequest,
  type GrabResponse,
  type ImportUsersRequest,
  type ImportUsersResponse,
  type UserRecord,
} from '@redpacket/proto';
import {
  callClientStream,
  callUnary,
  unaryMethods,
  type CallContext,
  type CallOptions,
  type UnaryMethods,
} from './calls.js';
import { DEFAULT_RETRY, withRetry, type RetryOptions } from './retry.js';

/** Where the token comes from: a fixed one, or a function asked before every call (so it can refresh). */
export type TokenSource =
  { token: string; tokenProvider?: never } | { tokenProvider: () => Promise<string> | string; token?: never };

/** Client certificates for mTLS; without `tls` the channel is plaintext (inside a trusted network). */
export interface TlsOptions {
  /** The CA that signed the server's certificate (the system's roots when absent). */
  ca?: Buffer;
  /** This client's certificate chain, PEM (with `key`, for mTLS). */
  cert?: Buffer;
  /** This client's private key, PEM. */
  key?: Buffer;
}

/** Options of createRedPacketClient. */
export type RedPacketClientOptions = TokenSource & {
  /** host:port of the services (AdminService is on grab-svc). */
  address: string;
  /** A different host:port per service, where they do not share one (admin follows grab). */
  addresses?: { grab?: string; account?: string; gift?: string };
  tls?: TlsOptions;
  /** Each call's deadline in ms, each grab attempt's too (default 10 000; 0 = none). */
  deadlineMs?: number;
  /** How Grab retries UNAVAILABLE and DEADLINE_EXCEEDED; no other method retries. */
  retry?: RetryOptions;
  /** grpc-js channel options, e.g. keepalive; they override the reconnect back-off set from `retry`. */
  channelOptions?: ChannelOptions;
};

/** A grab's request: request_id may be left out, the client then makes one for all the attempts. */
export type GrabInput = Omit<GrabRequest, 'requestId'> & { requestId?: string };

/** Every method of GrabService, AdminService, GiftService and AccountService as a promise. */
export type RedPacketClient = Omit<UnaryMethods<typeof GrabServiceService>, 'grab'> &
  UnaryMethods<typeof AdminServiceService> &
  UnaryMethods<typeof GiftServiceService> &
  UnaryMethods<typeof AccountServiceService> & {
    /** Grabs a packet; retries UNAVAILABLE and DEADLINE_EXCEEDED with the same request_id. */
    grab(request: GrabInput, options?: CallOptions): Promise<GrabResponse>;
    /** Streams users to AccountService.ImportUsers, one message per array, read as the server takes them. */
    importUsers(
      batches: AsyncIterable<UserRecord[]> | Iterable<UserRecord[]>,
      options?: CallOptions,
    ): Promise<ImportUsersResponse>;
    /** Closes every channel; calls in flight fail with CANCELLED. */
    close(): void;
  };

export const DEFAULT_DEADLINE_MS = 10_000;

function channelCredentials(tls: TlsOptions | undefined): ChannelCredentials {
  if (!tls) return credentials.createInsecure();
  return credentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null);
}

/** Creates a client of the red packet mesh; call close() when done. */
export function createRedPacketClient(opts: RedPacketClientOptions): RedPacketClient {
  const { token, tokenProvider } = opts;
  const ctx: CallContext = {
    token: tokenProvider ?? (() => token ?? ''),
    deadlineMs: opts.deadlineMs ?? DEFAULT_DEADLINE_MS,
  };
  const retry = { ...DEFAULT_RETRY, ...opts.retry };
  const creds = channelCredentials(opts.tls);
  // grpc-js's own reconnect back-off (1 s growing to 120 s) would fail every grab retry at once
  // while it waits; reconnecting at the retry's pace lets a retry find a server that came back.
  const channelOptions: ChannelOptions = {
    'grpc.initial_reconnect_backoff_ms': retry.initialDelayMs,
    'grpc.max_reconnect_backoff_ms': retry.maxDelayMs,
    ...opts.channelOptions,
  };
  const at = (svc: 'grab' | 'account' | 'gift'): string => opts.addresses?.[svc] ?? opts.address;
  const grabStub = new GrabServiceClient(at('grab'), creds, channelOptions);
  const adminStub = new AdminServiceClient(at('grab'), creds, channelOptions);
  const giftStub = new GiftServiceClient(at('gift'), creds, channelOptions);
  const accountStub = new AccountServiceClient(at('account'), creds, channelOptions);
  const grabDef = GrabServiceService.grab;

  return {
    ...unaryMethods(grabStub, GrabServiceService, ctx),
    ...unaryMethods(adminStub, AdminServiceService, ctx),
    ...unaryMethods(giftStub, GiftServiceService, ctx),
    ...unaryMethods(accountStub, AccountServiceService, ctx),
    grab(request, options = {}) {
      // Made before the first attempt, so every retry is the same request to grab-svc.
      const requestId = request.requestId || randomUUID();
      const req: GrabRequest = { ...request, requestId };
      const headerId = options.requestId ?? requestId;
      return withRetry(
        (deadlineMs) => callUnary(grabStub, grabDef, ctx, req, { requestId: headerId, deadlineMs }),
        options.deadlineMs ?? ctx.deadlineMs,
        retry,
      );
    },
    importUsers(batches, options) {
      return callClientStream(accountStub, AccountServiceService.importUsers, ctx, asMessages(batches), options);
    },
    close() {
      for (const s of [grabStub, adminStub, giftStub, accountStub]) s.close();
    },
  };
}

async function* asMessages(
  batches: AsyncIterable<UserRecord[]> | Iterable<UserRecord[]>,
): AsyncIterable<ImportUsersRequest> {
  for await (const users of batches) yield { users };
}

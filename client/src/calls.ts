/**
 * The one wrapper over the generated stubs: any unary method of a stub becomes a promise method,
 * typed from the stub's own service definition, so a method added to a .proto needs no code here.
 */
import { randomUUID } from 'node:crypto';
import { Metadata, type Client, type ServiceError } from '@grpc/grpc-js';
import { toRedPacketError } from './errors.js';
import { REQUEST_ID_HEADER } from './request-id.js';

/** Per-call options of every method. */
export interface CallOptions {
  /** This call's deadline in ms (the client's `deadlineMs` when absent; 0 = none). */
  deadlineMs?: number;
  /** The x-request-id to send (a fresh UUID when absent), echoed in RedPacketError.requestId. */
  requestId?: string;
}

/** One method of a generated service definition (ts-proto's `outputServices=grpc-js` shape). */
interface MethodDefinition<Req, Res> {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestSerialize(value: Req): Buffer;
  responseDeserialize(value: Buffer): Res;
}

/** The unary methods of a service definition as promise methods. */
export type UnaryMethods<D> = {
  [K in keyof D as D[K] extends { requestStream: false; responseStream: false } ? K : never]: D[K] extends {
    requestSerialize(value: infer Req): Buffer;
    responseDeserialize(value: Buffer): infer Res;
  }
    ? (request: Req, options?: CallOptions) => Promise<Res>
    : never;
};

/** What every call needs from the client: where the token comes from and the default deadline. */
export interface CallContext {
  token: () => Promise<string> | string;
  deadlineMs: number;
}

/** The call's metadata (token, request id) and grpc-js options. */
async function prepare(
  ctx: CallContext,
  options: CallOptions,
): Promise<{ md: Metadata; requestId: string; deadline: Date | undefined }> {
  const md = new Metadata();
  md.set('authorization', `Bearer ${await ctx.token()}`);
  const requestId = options.requestId ?? randomUUID();
  md.set(REQUEST_ID_HEADER, requestId);
  const ms = options.deadlineMs ?? ctx.deadlineMs;
  return { md, requestId, deadline: ms > 0 ? new Date(Date.now() + ms) : undefined };
}

/** Calls one unary method of `stub` as a promise; a failure rejects with a RedPacketError. */
export async function callUnary<Req, Res>(
  stub: Client,
  def: MethodDefinition<Req, Res>,
  ctx: CallContext,
  request: Req,
  options: CallOptions = {},
): Promise<Res> {
  const { md, requestId, deadline } = await prepare(ctx, options);
  return new Promise<Res>((resolve, reject) => {
    stub.makeUnaryRequest(
      def.path,
      def.requestSerialize,
      def.responseDeserialize,
      request,
      md,
      { deadline },
      (err: ServiceError | null, res?: Res) =>
        err ? reject(toRedPacketError(err, def.path, requestId)) : resolve(res as Res),
    );
  });
}

/** Every unary method of a generated stub, each through callUnary. */
export function unaryMethods<D extends object>(stub: Client, service: D, ctx: CallContext): UnaryMethods<D> {
  const out: Record<string, unknown> = {};
  for (const [name, def] of Object.entries(service) as [string, MethodDefinition<unknown, unknown>][]) {
    if (def.requestStream || def.responseStream) continue;
    out[name] = (request: unknown, options?: CallOptions) => callUnary(stub, def, ctx, request, options);
  }
  return out as UnaryMethods<D>;
}

/**
 * Calls a client-streaming method: each item of `messages` is one message, written as the stream
 * drains (an async source is read no faster than the server takes it). A failing source cancels
 * the call and rejects with the source's error.
 */
export async function callClientStream<Req, Res>(
  stub: Client,
  def: MethodDefinition<Req, Res>,
  ctx: CallContext,
  messages: AsyncIterable<Req> | Iterable<Req>,
  options: CallOptions = {},
): Promise<Res> {
  const { md, requestId, deadline } = await prepare(ctx, options);
  let sourceError: { err: unknown } | undefined;
  let pumping: Promise<void> | undefined;
  const reply = new Promise<Res>((resolve, reject) => {
    const stream = stub.makeClientStreamRequest(
      def.path,
      def.requestSerialize,
      def.responseDeserialize,
      md,
      { deadline },
      (err: ServiceError | null, res?: Res) => {
        if (sourceError) reject(sourceError.err);
        else if (err) reject(toRedPacketError(err, def.path, requestId));
        else resolve(res as Res);
      },
    );
    // Once the call has a status (an early error), nothing more is written and no 'drain' will come.
    let ended = false;
    const settled = new Promise<void>((r) => stream.once('status', () => ((ended = true), r())));
    pumping = (async () => {
      try {
        for await (const m of messages) {
          if (ended) return;
          if (!stream.write(m)) await Promise.race([new Promise((r) => stream.once('drain', r)), settled]);
        }
        if (!ended) stream.end();
      } catch (err) {
        sourceError = { err };
        stream.cancel();
      }
    })();
  });
  const res = await reply;
  await pumping;
  return res;
}

/**
 * The win pipeline's shared parts: the RabbitMQ topology (declared identically by the relay
 * and by gift-svc, so whichever starts first creates it) and the WinEvent message codec.
 */
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import { backOff } from 'exponential-backoff';
import type { Logger } from '@redpacket/lib';
import { CAMPAIGN_ID_PATTERN, USER_ID_PATTERN } from '@redpacket/lib';
import { WinEvent } from '@redpacket/proto';

export { WinEvent } from '@redpacket/proto';

/** The local RabbitMQ's default account: the services' default, for development. */
export const DEFAULT_AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';

export const WIN_CONTENT_TYPE = 'application/x-protobuf; proto=redpacket.v1.WinEvent';

/** AMQP header carrying a win's trace id (the edge's x-request-id), as the body's trace_id does. */
export const TRACE_HEADER = 'x-request-id';

/** A trace id as it may go into a log line: it never stops a win, so it is bounded, not refused. */
export const traceForLog = (traceId: string): string => traceId.slice(0, 128);

/** Names of the exchanges and queues; tests and benchmarks use their own. */
export interface Topology {
  /** Durable topic exchange the relay publishes to; routing key = campaign id. */
  exchange: string;
  /** gift-svc's durable queue, bound to the exchange with "#". */
  queue: string;
  /** Dead-letter exchange (fanout) and its queue: poison and over-retried wins. */
  deadExchange: string;
  deadQueue: string;
}

export const DEFAULT_TOPOLOGY: Topology = {
  exchange: 'redpacket.wins',
  queue: 'gift.wins',
  deadExchange: 'redpacket.wins.dead',
  deadQueue: 'gift.wins.dead',
};

/** Topology names with a common suffix: how tests and benchmarks stay apart. */
export function topologyWithSuffix(suffix: string): Topology {
  return {
    exchange: `${DEFAULT_TOPOLOGY.exchange}.${suffix}`,
    queue: `${DEFAULT_TOPOLOGY.queue}.${suffix}`,
    deadExchange: `${DEFAULT_TOPOLOGY.deadExchange}.${suffix}`,
    deadQueue: `${DEFAULT_TOPOLOGY.deadQueue}.${suffix}`,
  };
}

/**
 * Declares exchanges, queues and bindings (idempotent). The relay declares the queue too:
 * a win published before any gift-svc ever started must not be dropped as unroutable.
 */
export async function assertTopology(ch: Channel, t: Topology): Promise<void> {
  await ch.assertExchange(t.exchange, 'topic', { durable: true });
  await ch.assertExchange(t.deadExchange, 'fanout', { durable: true });
  await ch.assertQueue(t.deadQueue, { durable: true });
  await ch.bindQueue(t.deadQueue, t.deadExchange, '');
  await ch.assertQueue(t.queue, { durable: true, deadLetterExchange: t.deadExchange });
  await ch.bindQueue(t.queue, t.exchange, '#');
}

/** Removes a topology (tests and benchmarks only). */
export async function deleteTopology(ch: Channel, t: Topology): Promise<void> {
  await ch.deleteQueue(t.queue);
  await ch.deleteQueue(t.deadQueue);
  await ch.deleteExchange(t.exchange);
  await ch.deleteExchange(t.deadExchange);
}

/**
 * Opens an AMQP connection whose name shows in `rabbitmqctl list_connections` (and lets a
 * fault test close exactly this connection).
 */
export function connectAmqp(url: string, connectionName: string): Promise<ChannelModel> {
  return amqp.connect(url, { clientProperties: { connection_name: connectionName } });
}

export const encodeWin = (w: WinEvent): Buffer => Buffer.from(WinEvent.encode(w).finish());

/** What makes a decoded win acceptable for crediting. */
const PACKET_ID = /^[A-Za-z0-9_-]{1,32}$/;
const MAX_AMOUNT = 1_000_000_000_000n;
/** 9999-12-31: what a DATETIME holds. */
const MAX_WON_AT_MS = 253_402_300_799_999n;

/** Decodes and validates a message body; throws with the reason when it is not a usable win. */
export function decodeWin(body: Buffer): WinEvent {
  let w: WinEvent;
  try {
    w = WinEvent.decode(body);
  } catch (err) {
    throw new Error(`not a WinEvent: ${(err as Error).message}`, { cause: err });
  }
  if (!CAMPAIGN_ID_PATTERN.test(w.campaignId)) throw new Error('bad campaign_id');
  if (!PACKET_ID.test(w.packetId)) throw new Error('bad packet_id');
  if (!USER_ID_PATTERN.test(w.userId)) throw new Error('bad user_id');
  if (w.amountCents < 1n || w.amountCents > MAX_AMOUNT) throw new Error('amount_cents out of range');
  if (w.wonAtMs <= 0n || w.wonAtMs > MAX_WON_AT_MS) throw new Error('bad won_at_ms');
  if (w.requestId.length > 128) throw new Error('request_id too long');
  return w;
}

/** Best-effort ids of a message that failed validation, for counting (and logging) it. */
export function peekIds(body: Buffer): { campaignId: string; packetId: string; traceId: string } {
  try {
    const w = WinEvent.decode(body);
    return { campaignId: w.campaignId, packetId: w.packetId, traceId: traceForLog(w.traceId) };
  } catch {
    return { campaignId: '', packetId: '', traceId: '' };
  }
}

/**
 * Runs `open` until it succeeds, with exponential back-off (full jitter, capped at maxDelayMs)
 * between failures, while `running()` says so; logs every tenth failure.
 */
export function withReconnect<T>(
  open: () => Promise<T>,
  o: { log: Logger; maxDelayMs: number; running: () => boolean },
): Promise<T> {
  return backOff(open, {
    numOfAttempts: Number.MAX_SAFE_INTEGER,
    startingDelay: 100,
    maxDelay: o.maxDelayMs,
    jitter: 'full',
    retry: (err: Error, attempt) => {
      if (attempt % 10 === 1) o.log.warn({ err: err.message, attempt }, 'RabbitMQ unreachable; retrying');
      return o.running();
    },
  });
}

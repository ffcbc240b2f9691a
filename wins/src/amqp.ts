/** Connecting to RabbitMQ: named connections, and reconnecting with back-off while it is away. */
import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import { backOff } from 'exponential-backoff';
import type { Logger } from '@redpacket/lib';
import { assertTopology, QueueMismatchError, type Topology } from './topology.js';

/** The local RabbitMQ's default account: the services' default, for development. */
export const DEFAULT_AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';

/**
 * Opens an AMQP connection whose name shows in `rabbitmqctl list_connections` (and lets a
 * fault test close exactly this connection).
 */
export function connectAmqp(url: string, connectionName: string): Promise<ChannelModel> {
  return amqp.connect(url, { clientProperties: { connection_name: connectionName } });
}

export interface OpenConfirmChannelOptions {
  url: string;
  /** Shown in `rabbitmqctl list_connections` (connectAmqp). */
  connectionName: string;
  topology: Topology;
  /** Where connection and channel errors are logged (as warnings: the close handlers reconnect). */
  log: Logger;
  /**
   * The caller's own handlers (return, close), attached before the topology is declared: a
   * declare that fails closes the channel, and that close must be seen too.
   */
  attach?: (conn: ChannelModel, ch: ConfirmChannel) => void;
}

/**
 * A named connection with a confirm channel on which the topology is declared: how the relay and
 * gift-svc both (re)connect. When a step fails the connection is closed again and the error thrown.
 */
export async function openConfirmChannel(
  o: OpenConfirmChannelOptions,
): Promise<{ conn: ChannelModel; ch: ConfirmChannel }> {
  const conn = await connectAmqp(o.url, o.connectionName);
  try {
    conn.on('error', (err: Error) => o.log.warn({ err: err.message }, 'amqp connection error'));
    const ch = await conn.createConfirmChannel();
    ch.on('error', (err: Error) => o.log.warn({ err: err.message }, 'amqp channel error'));
    o.attach?.(conn, ch);
    await assertTopology(ch, o.topology);
    return { conn, ch };
  } catch (err) {
    await conn.close().catch(() => undefined);
    throw err;
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
      if (attempt % 10 !== 1) return o.running();
      if (err instanceof QueueMismatchError)
        o.log.error({ err: err.message, attempt }, 'wins queue not migrated; retrying');
      else o.log.warn({ err: err.message, attempt }, 'RabbitMQ unreachable; retrying');
      return o.running();
    },
  });
}

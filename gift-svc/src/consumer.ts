/**
 * The gift consumer: takes wins from the gift queue at most `rate` a second (a token bucket),
 * credits them into MySQL in batched transactions, and acks each message only after its
 * batch committed. A redelivery is harmless (the writer is idempotent). Database outages are
 * retried with back-off for as long as they last; a message that cannot be decoded, or whose
 * write fails `maxAttempts` times for a reason of its own, goes to the dead-letter queue.
 */
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import { backOff } from 'exponential-backoff';
import { TokenBucket } from 'limiter';
import { dependencyTimer, type Logger } from '@redpacket/lib';
import type { Pool } from '@redpacket/db';
import {
  decodeWin,
  openConfirmChannel,
  peekIds,
  traceForLog,
  withReconnect,
  type Topology,
  type WinEvent,
} from '@redpacket/wins';
import { isTransient, recordDeadLetter, writeAwards } from './awards-writer.js';
import { giftMetrics, watchBacklog, type BacklogSource } from './metrics.js';

const timers = {
  write: dependencyTimer('mysql', 'gift_write_awards'),
  deadLetter: dependencyTimer('mysql', 'gift_record_dead_letter'),
  ack: dependencyTimer('amqp', 'gift_ack'),
  requeue: dependencyTimer('amqp', 'gift_requeue_confirm'),
  depth: dependencyTimer('amqp', 'gift_check_queue'),
};

export interface GiftConsumerOptions {
  pool: Pool;
  amqpUrl: string;
  topology: Topology;
  /** Shown by `rabbitmqctl list_connections`; fault tests close connections by it. */
  connectionName: string;
  log: Logger;
  /** Deliveries credited per second at most; 0 = unlimited. */
  rate: number;
  /** Most wins in one INSERT / transaction. */
  batchSize?: number;
  /** Transactions in flight at once (each on its own pool connection). */
  writers?: number;
  /** Unacked deliveries the broker may push ahead (default (writers + 1) x a full batch). */
  prefetch?: number;
  /** Writes of one message failing for a reason of its own before it is dead-lettered. */
  maxAttempts?: number;
  /** Longest back-off between retries of a database outage or a reconnect. */
  maxBackoffMs?: number;
  /** The batch writer; default writeAwards (tests wrap it to make one win fail). */
  write?: (pool: Pool, wins: WinEvent[]) => Promise<number>;
  /**
   * While it returns true (the gift.paused switch), no deliveries are taken: the consumer is
   * cancelled, so wins stay ready in the queue; those already received are still written.
   */
  paused?: () => boolean;
  /** How often `paused` is looked at (default 250 ms). */
  pauseCheckMs?: number;
}

export interface GiftConsumerStats {
  received: number;
  credited: number;
  duplicates: number;
  deadLettered: number;
  retried: number;
  batches: number;
  reconnects: number;
}

const ATTEMPTS_HEADER = 'x-redpacket-attempts';

interface Pending {
  msg: ConsumeMessage;
  ch: ConfirmChannel;
}

/** One batch in delivery order, for ordered multiple-acks. */
interface Slot {
  ch: ConfirmChannel;
  size: number;
  ackable: ConsumeMessage | undefined;
  done: boolean;
}

export class GiftConsumer implements BacklogSource {
  readonly stats: GiftConsumerStats = {
    received: 0,
    credited: 0,
    duplicates: 0,
    deadLettered: 0,
    retried: 0,
    batches: 0,
    reconnects: 0,
  };
  private readonly o: Required<GiftConsumerOptions>;
  private readonly bucket: TokenBucket | undefined;
  private readonly bucketSize: number;
  /** Deliveries in a full batch. */
  private readonly full: number;
  private conn: ChannelModel | undefined;
  private ch: ConfirmChannel | undefined;
  private buffer: Pending[] = [];
  private slots: Slot[] = [];
  /** Wakes the drain loop when a full batch has arrived. */
  private kick: (() => void) | undefined;
  private running = false;
  private working = false;
  private idle: Promise<void> = Promise.resolve();
  private reconnecting: Promise<void> | undefined;
  /** The consumer on `ch`; undefined while paused (or not connected). */
  private consumerTag: string | undefined;
  /** Consume/cancel calls, one at a time, so a channel never gets two consumers. */
  private pauseSync: Promise<void> = Promise.resolve();
  private pauseTimer: NodeJS.Timeout | undefined;
  /** A channel of its own for checkQueue: a failed check closes its channel, never the consumer's. */
  private probe: Promise<Channel> | undefined;
  private unwatch: (() => void) | undefined;

  constructor(opts: GiftConsumerOptions) {
    const batchSize = opts.batchSize ?? 500;
    const writers = opts.writers ?? 4;
    if (opts.rate > 0) {
      // A tenth of a second of burst: enough to batch, too little to overshoot the rate.
      this.bucketSize = Math.max(1, Math.ceil(opts.rate / 10));
      this.bucket = new TokenBucket({ bucketSize: this.bucketSize, tokensPerInterval: opts.rate, interval: 'second' });
    } else {
      this.bucketSize = batchSize;
    }
    this.full = Math.min(batchSize, this.bucketSize);
    this.o = {
      // No more unacked deliveries than this instance can write soon: a throttled instance
      // holding thousands would starve the other instances on the same queue.
      prefetch: (writers + 1) * this.full,
      maxAttempts: 5,
      maxBackoffMs: 5000,
      write: writeAwards,
      paused: () => false,
      pauseCheckMs: 250,
      ...opts,
      batchSize,
      writers,
    };
  }

  /** Connects (retrying with back-off until RabbitMQ answers) and starts consuming. */
  async start(): Promise<void> {
    this.running = true;
    this.unwatch ??= watchBacklog(this);
    this.pauseTimer ??= setInterval(() => {
      this.syncPause().catch((err: Error) => this.o.log.warn({ err: err.message }, 'pause/resume failed; retrying'));
    }, this.o.pauseCheckMs);
    await this.connect().catch((err: unknown) => {
      if (this.running) throw err; // stopped while still connecting: nothing went wrong
    });
  }

  /** Stops taking deliveries, finishes the batch in progress, closes the connection. */
  async stop(): Promise<void> {
    this.running = false;
    this.unwatch?.();
    this.unwatch = undefined;
    clearInterval(this.pauseTimer);
    this.pauseTimer = undefined;
    await this.pauseSync;
    await this.idle;
    await this.reconnecting?.catch(() => undefined);
    const conn = this.conn;
    const ch = this.ch;
    this.conn = undefined;
    this.ch = undefined;
    this.consumerTag = undefined;
    this.probe = undefined;
    this.buffer = [];
    // The channel first: its close goes out behind the acks just sent (of batches committed while
    // stopping), and waits for the broker's answer. A connection close alone can overtake acks still
    // queued in amqplib's channel stream, and the broker would deliver those wins again (harmless,
    // but each one a second write; the SIGTERM test counts them).
    await ch?.close().catch(() => undefined);
    await conn?.close().catch(() => undefined);
  }

  /** True while the consumer's RabbitMQ connection and channel are open (paused or not). */
  get connected(): boolean {
    return this.ch !== undefined;
  }

  /** Deliveries held unacked: buffered, or in a batch not yet acked. */
  get unacked(): number {
    let n = this.buffer.length;
    for (const s of this.slots) n += s.size;
    return n;
  }

  /** Messages ready in the gift queue, asked of the broker; undefined while not connected. */
  async queueDepth(): Promise<{ queue: string; ready: number } | undefined> {
    const conn = this.conn;
    if (!conn) return undefined;
    let probe = this.probe;
    if (!probe) {
      const opened: Promise<Channel> = conn.createChannel().then((ch) => {
        ch.on('error', () => undefined); // the failing call says why
        ch.on('close', () => {
          if (this.probe === opened) this.probe = undefined;
        });
        return ch;
      });
      this.probe = probe = opened;
    }
    try {
      const q = await timers.depth.time(async () => (await probe).checkQueue(this.o.topology.queue));
      return { queue: this.o.topology.queue, ready: q.messageCount };
    } catch (err) {
      if (this.probe === probe) this.probe = undefined;
      throw err;
    }
  }

  private connect(): Promise<void> {
    this.reconnecting ??= withReconnect(() => this.open(), {
      log: this.o.log,
      maxDelayMs: this.o.maxBackoffMs,
      running: () => this.running,
    }).finally(() => {
      this.reconnecting = undefined;
    });
    return this.reconnecting;
  }

  private async open(): Promise<void> {
    const { conn, ch } = await openConfirmChannel({
      url: this.o.amqpUrl,
      connectionName: this.o.connectionName,
      topology: this.o.topology,
      log: this.o.log,
      attach: (_conn, ch) => ch.on('close', () => this.onChannelClosed(ch)),
    });
    try {
      await ch.prefetch(this.o.prefetch);
      this.conn = conn;
      this.ch = ch;
      this.consumerTag = undefined;
      this.probe = undefined;
      await this.syncPause(); // consumes unless paused
      this.stats.reconnects++;
      giftMetrics.reconnects.inc();
      this.o.log.info({ queue: this.o.topology.queue, rate: this.o.rate, paused: this.isPaused }, 'connected');
    } catch (err) {
      await conn.close().catch(() => undefined);
      throw err;
    }
  }

  /** True while connected but not taking deliveries because `paused` said so. */
  get isPaused(): boolean {
    return this.ch !== undefined && this.consumerTag === undefined;
  }

  /** Cancels or (re)starts the consumer to match `paused`; serialized, so never two consumers. */
  private syncPause(): Promise<void> {
    const next = this.pauseSync.then(async () => {
      const ch = this.ch;
      if (!ch || !this.running) return;
      const paused = this.o.paused();
      if (paused && this.consumerTag !== undefined) {
        const tag = this.consumerTag;
        this.consumerTag = undefined;
        // Unacked deliveries survive a cancel: the buffered ones are written and acked as usual.
        await ch.cancel(tag);
        this.o.log.warn({ queue: this.o.topology.queue }, 'gift.paused: stopped taking wins; they keep queueing');
      } else if (!paused && this.consumerTag === undefined) {
        const { consumerTag } = await ch.consume(this.o.topology.queue, (msg) => msg && this.onDelivery(ch, msg), {
          noAck: false,
        });
        if (this.ch === ch) this.consumerTag = consumerTag;
        this.o.log.info({ queue: this.o.topology.queue, rate: this.o.rate }, 'consuming wins');
      }
    });
    this.pauseSync = next.catch(() => undefined);
    return next;
  }

  /** Unacked deliveries of a closed channel come back from the broker: drop our copies. */
  private onChannelClosed(ch: Channel): void {
    this.buffer = this.buffer.filter((p) => p.ch !== ch);
    this.slots = this.slots.filter((s) => s.ch !== ch);
    if (this.ch !== ch) return;
    this.ch = undefined;
    this.consumerTag = undefined;
    const conn = this.conn;
    this.conn = undefined;
    void conn?.close().catch(() => undefined);
    if (this.running) {
      this.o.log.warn('amqp channel closed; reconnecting');
      this.connect().catch((err: Error) => this.o.log.error({ err: err.message }, 'gave up reconnecting'));
    }
  }

  private onDelivery(ch: ConfirmChannel, msg: ConsumeMessage): void {
    this.stats.received++;
    giftMetrics.received.inc();
    this.buffer.push({ msg, ch });
    if (this.buffer.length >= this.full) this.kick?.();
    if (!this.working) {
      this.working = true;
      this.idle = this.drain().finally(() => {
        this.working = false;
      });
    }
  }

  /** Writes batches, up to `writers` transactions at once, while deliveries are buffered. */
  private async drain(): Promise<void> {
    const inflight = new Set<Promise<void>>();
    const full = this.full;
    while (this.running) {
      // A partial batch goes only when nothing is being written: small batches when idle (low
      // latency), full ones under load (each commit is an fsync; fewer, larger ones win).
      const ready = this.buffer.length >= full || (this.buffer.length > 0 && inflight.size === 0);
      if (!ready || inflight.size >= this.o.writers) {
        if (inflight.size === 0) break;
        await Promise.race([...inflight, new Promise<void>((r) => (this.kick = r))]);
        this.kick = undefined;
        continue;
      }
      const n = Math.min(this.buffer.length, full);
      if (this.bucket) await this.bucket.removeTokens(n);
      const batch = this.buffer.splice(0, n);
      const first = batch[0];
      if (!first) continue;
      const slot: Slot = { ch: first.ch, size: batch.length, ackable: undefined, done: false };
      this.slots.push(slot);
      const p: Promise<void> = this.process(batch)
        .then((last) => {
          slot.ackable = last;
        })
        .catch((err: Error) => {
          // Close the channel so that every unacked delivery (this batch's too) is redelivered:
          // a later batch's multiple-ack must never cover a batch that was not written.
          this.o.log.warn({ err: err.message }, 'batch abandoned; broker will redeliver');
          void slot.ch.close().catch(() => undefined);
        })
        .finally(() => {
          slot.done = true;
          this.flushAcks();
          inflight.delete(p);
        });
      inflight.add(p);
    }
    await Promise.all(inflight);
  }

  /**
   * Acks, with one multiple-ack, every batch written so far in delivery order: a batch that
   * commits early waits for the older ones, so an ack never covers an unwritten win.
   */
  private flushAcks(): void {
    let last: Slot | undefined;
    while (this.slots[0]?.done) {
      const s = this.slots.shift() as Slot;
      if (s.ackable && s.ch === this.ch) last = s;
    }
    if (last?.ackable) {
      try {
        const { ch, ackable } = last;
        timers.ack.timeSync(() => ch.ack(ackable, true));
      } catch (err) {
        this.o.log.warn({ err: (err as Error).message }, 'ack failed; broker will redeliver');
      }
    }
  }

  /** Writes a batch; returns its last delivery still to be acked (the others are settled). */
  private async process(batch: Pending[]): Promise<ConsumeMessage | undefined> {
    const good: { p: Pending; win: WinEvent }[] = [];
    for (const p of batch) {
      try {
        good.push({ p, win: decodeWin(p.msg.content) });
      } catch (err) {
        await this.deadLetter(p, (err as Error).message, attemptsOf(p.msg) + 1, peekIds(p.msg.content));
      }
    }
    if (good.length === 0) return undefined;
    let added: number;
    try {
      const wins = dedupe(good.map((g) => g.win));
      added = await this.retryOutages(() => timers.write.time(() => this.o.write(this.o.pool, wins)));
    } catch (err) {
      if (!this.running) throw err;
      // A failure of the data, not of the database: find the culprit(s) one by one.
      for (const g of good) await this.processOne(g.p, g.win);
      return undefined;
    }
    this.stats.batches++;
    this.stats.credited += added;
    this.stats.duplicates += good.length - added;
    giftMetrics.batches.inc();
    giftMetrics.delivered.inc(added);
    giftMetrics.duplicates.inc(good.length - added);
    if (this.o.log.isLevelEnabled('debug')) for (const g of good) this.logCredited(g.win);
    return good[good.length - 1]?.p.msg;
  }

  private async processOne(p: Pending, win: WinEvent): Promise<void> {
    let added: number;
    try {
      added = await this.retryOutages(() => timers.write.time(() => this.o.write(this.o.pool, [win])));
    } catch (err) {
      if (!this.running) throw err;
      return this.failedOnce(p, win, (err as Error).message);
    }
    this.stats.credited += added;
    this.stats.duplicates += 1 - added;
    giftMetrics.delivered.inc(added);
    giftMetrics.duplicates.inc(1 - added);
    timers.ack.timeSync(() => p.ch.ack(p.msg));
    if (this.o.log.isLevelEnabled('debug')) this.logCredited(win);
  }

  /** One line per win in MySQL (new or already there), at debug: the trace's last stop. */
  private logCredited(win: WinEvent): void {
    this.o.log.debug(
      { campaignId: win.campaignId, packetId: win.packetId, userId: win.userId, traceId: traceForLog(win.traceId) },
      'win credited',
    );
  }

  private async failedOnce(p: Pending, win: WinEvent, reason: string): Promise<void> {
    const attempts = attemptsOf(p.msg) + 1;
    if (attempts >= this.o.maxAttempts) return this.deadLetter(p, reason, attempts, win);
    // Back to the end of the queue with its attempt count, so it never blocks the others.
    this.stats.retried++;
    giftMetrics.retries.inc();
    p.ch.sendToQueue(this.o.topology.queue, p.msg.content, {
      ...p.msg.properties,
      persistent: true,
      headers: { ...p.msg.properties.headers, [ATTEMPTS_HEADER]: attempts },
    });
    await timers.requeue.time(() => p.ch.waitForConfirms());
    timers.ack.timeSync(() => p.ch.ack(p.msg));
    this.o.log.warn(
      { packetId: win.packetId, traceId: traceForLog(win.traceId), attempts, err: reason },
      'win write failed; requeued',
    );
  }

  private async deadLetter(
    p: Pending,
    reason: string,
    attempts: number,
    win: { campaignId: string; packetId: string; traceId: string } | WinEvent,
  ): Promise<void> {
    await this.retryOutages(() =>
      timers.deadLetter.time(() => recordDeadLetter(this.o.pool, { ...win, reason, attempts, body: p.msg.content })),
    );
    this.stats.deadLettered++;
    giftMetrics.deadLettered.inc();
    // Rejected without requeue: the queue's dead-letter exchange takes it.
    p.ch.nack(p.msg, false, false);
    this.o.log.error(
      { campaignId: win.campaignId, packetId: win.packetId, traceId: traceForLog(win.traceId), attempts, reason },
      'win dead-lettered',
    );
  }

  /** Runs `fn`, retrying with back-off while the database is unreachable (and we run). */
  private retryOutages<T>(fn: () => Promise<T>): Promise<T> {
    return backOff(fn, {
      numOfAttempts: Number.MAX_SAFE_INTEGER,
      startingDelay: 50,
      maxDelay: this.o.maxBackoffMs,
      jitter: 'full',
      retry: (err: unknown, attempt) => {
        if (!isTransient(err) || !this.running) return false;
        if (attempt % 10 === 2) this.o.log.warn({ err: (err as Error).message, attempt }, 'MySQL failing; retrying');
        return true;
      },
    });
  }
}

function attemptsOf(msg: ConsumeMessage): number {
  const v = Number(msg.properties.headers?.[ATTEMPTS_HEADER] ?? 0);
  return Number.isInteger(v) && v > 0 ? v : 0;
}

/** The same packet twice in one batch (a redelivery overtaking itself) is written once. */
function dedupe(wins: WinEvent[]): WinEvent[] {
  const seen = new Map<string, WinEvent>();
  for (const w of wins) seen.set(w.packetId, w);
  return [...seen.values()];
}

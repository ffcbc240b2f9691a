/**
 * The outbox relay: moves wins from each campaign's outbox stream (a Redis consumer group)
 * to RabbitMQ as persistent messages with publisher confirms, and XACKs + XDELs a stream
 * entry only after the broker confirmed it. Anything that fails leaves the entries pending
 * in the group: this relay re-reads its own pending entries, and XAUTOCLAIM hands entries of
 * a relay that died to a live one. Duplicates are possible, losses are not.
 */
import { once } from 'node:events';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import { dependencyTimer, keys, withTimeout, type Logger, type RedisClient } from '@redpacket/lib';
import {
  encodeWin,
  openConfirmChannel,
  TRACE_HEADER,
  WIN_CONTENT_TYPE,
  withReconnect,
  type Topology,
  type WinEvent,
} from '@redpacket/wins';
import { entryToWin } from '../outbox-entry.js';
import { activeOutboxes, fillLiveIndex, mapBounded, withSubPools } from '../campaign-index.js';
import { relayFailures, relayLag, relayLastLag, relayPublished, watchOutboxes } from './relay-metrics.js';

const timers = {
  read: dependencyTimer('redis', 'relay_xreadgroup'),
  claim: dependencyTimer('redis', 'relay_xautoclaim'),
  ack: dependencyTimer('redis', 'relay_xack_xdel'),
  publish: dependencyTimer('amqp', 'relay_publish_confirm'),
};

export interface RelayOptions {
  /** A connection of its own: the relay never shares the grab path's connection. */
  redis: RedisClient;
  amqpUrl: string;
  topology: Topology;
  /** Shown by `rabbitmqctl list_connections`; fault tests close connections by it. */
  connectionName: string;
  log: Logger;
  /**
   * Which campaigns' outboxes to relay; default: activeOutboxes() (every live campaign, the index
   * filled first on a deployment older than it), refreshed every second.
   */
  campaigns?: () => Promise<string[]>;
  /** Consumer group name (one per deployment) and this relay's consumer name in it. */
  group?: string;
  consumer?: string;
  /** Entries read and published per confirm round trip. */
  batchSize?: number;
  /** Pause when no outbox had anything. */
  idleMs?: number;
  /** An entry pending this long in another consumer is taken over (XAUTOCLAIM). */
  claimIdleMs?: number;
  /** How often to look for such entries. */
  claimEveryMs?: number;
  /** Consumers with nothing pending and idle this long (relays gone for good) leave the group. */
  pruneIdleMs?: number;
  /** A confirm not back within this long counts as a failure (the connection is reopened). */
  confirmTimeoutMs?: number;
  /** Longest back-off between reconnect attempts. */
  maxBackoffMs?: number;
  /**
   * Resolves once the entries just read from a pool's outbox are durable under grab-svc's policy
   * (durability.ts), throws if not: a win is never published before it is durable, so no win a
   * promoted replica or a restarted Redis lacks ever reaches RabbitMQ. Absent: publish at once.
   */
  durable?: (pool: string) => Promise<void>;
}

export interface RelayStats {
  published: number;
  confirmedBatches: number;
  failures: number;
  claimed: number;
  reconnects: number;
}

type StreamEntry = [id: string, fields: string[] | null];

/** The entries read are not durable yet (RelayOptions.durable refused them). */
class NotDurable extends Error {
  constructor(cause: Error) {
    super(`wins not durable yet: ${cause.message}`, { cause });
    this.name = 'NotDurable';
  }
}

/** A published batch waiting for its confirms. */
interface InFlight {
  gone: string[];
  live: number;
  confirmed: Promise<string[]>;
}

/** Batches of one campaign per pass, so one busy campaign cannot starve the others. */
const BATCHES_PER_TURN = 20;
/** How often, at most, one outbox's consumer list is pruned. */
const PRUNE_EVERY_MS = 60_000;

export const DEFAULT_RELAY_GROUP = 'relay';
const CAMPAIGN_REFRESH_MS = 1000;

/** Decoded next to the Lua that writes it; re-exported for the relay's tests. */
export { entryToWin };

export class OutboxRelay {
  readonly stats: RelayStats = { published: 0, confirmedBatches: 0, failures: 0, claimed: 0, reconnects: 0 };
  private readonly o: Required<Omit<RelayOptions, 'campaigns' | 'durable'>> &
    Pick<RelayOptions, 'campaigns' | 'durable'>;
  private conn: ChannelModel | undefined;
  private ch: ConfirmChannel | undefined;
  private running = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private readonly groups = new Set<string>();
  /** Campaigns whose entries this consumer read but could not publish: re-read from "0". */
  private readonly ownPending = new Set<string>();
  private readonly claimCursor = new Map<string, string>();
  /** Packet ids the broker returned as unroutable, until their batch is settled. */
  private readonly returned = new Set<string>();
  /** When each outbox was last scanned for entries to take over. */
  private readonly lastClaimMs = new Map<string, number>();
  private readonly lastPruneMs = new Map<string, number>();
  private campaignList: string[] = [];
  private campaignListAt = 0;
  private indexFilled = false;
  private unwatch: (() => void) | undefined;

  constructor(opts: RelayOptions) {
    this.o = {
      group: DEFAULT_RELAY_GROUP,
      consumer: `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`,
      batchSize: 500,
      idleMs: 50,
      claimIdleMs: 10_000,
      claimEveryMs: 1000,
      pruneIdleMs: 600_000,
      confirmTimeoutMs: 30_000,
      maxBackoffMs: 5000,
      ...opts,
    };
  }

  get consumer(): string {
    return this.o.consumer;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.unwatch = watchOutboxes(this);
    this.loop = this.run();
  }

  /**
   * Entries in each outbox this relay reads, by campaign (sub-pools summed): one XLEN each, sent
   * concurrently, a bounded number at a time (not one pipeline: on Redis Cluster the outboxes
   * live on different slots).
   */
  async outboxLengths(): Promise<Map<string, number>> {
    const ids = this.campaignList;
    const lengths = await mapBounded(ids, (id) => this.o.redis.xlen(keys.outbox(id)));
    const out = new Map<string, number>();
    ids.forEach((id, i) => {
      const campaign = id.includes('.') ? id.slice(0, id.lastIndexOf('.')) : id;
      out.set(campaign, (out.get(campaign) ?? 0) + (lengths[i] ?? 0));
    });
    return out;
  }

  /** Stops after the batch in progress; entries not yet confirmed stay pending. */
  async stop(): Promise<void> {
    this.running = false;
    this.unwatch?.();
    this.wake?.();
    await this.loop;
    await this.closeAmqp();
  }

  private async run(): Promise<void> {
    while (this.running) {
      let moved = 0;
      try {
        for (const c of await this.campaigns()) {
          if (!this.running) break;
          moved += await this.relayCampaign(c);
        }
      } catch (err) {
        this.stats.failures++;
        relayFailures.inc();
        this.o.log.warn({ err: (err as Error).message }, 'relay batch failed; entries stay pending');
        // The broker is fine when it is the wins that are not durable yet.
        if (!(err instanceof NotDurable)) await this.closeAmqp();
      }
      if (moved === 0 && this.running) await this.pause(this.o.idleMs);
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  private async campaigns(): Promise<string[]> {
    const now = Date.now();
    if (now - this.campaignListAt >= CAMPAIGN_REFRESH_MS) {
      if (!this.o.campaigns && !this.indexFilled) {
        await fillLiveIndex(this.o.redis);
        this.indexFilled = true;
      }
      this.campaignList = this.o.campaigns
        ? await withSubPools(this.o.redis, await this.o.campaigns())
        : await activeOutboxes(this.o.redis);
      this.campaignListAt = now;
    }
    return this.campaignList;
  }

  private async ensureGroup(stream: string): Promise<void> {
    if (this.groups.has(stream)) return;
    try {
      await this.o.redis.xgroup('CREATE', stream, this.o.group, '0', 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
    }
    this.groups.add(stream);
  }

  /**
   * Relays up to BATCHES_PER_TURN batches of one campaign's outbox; returns how many entries it
   * moved. Two batches overlap: the next one is read and published while the broker confirms
   * the previous one. Entries of this consumer left pending by a failure are re-read first, one
   * batch at a time (re-reading from "0" while a batch is in flight would publish it twice).
   */
  private async relayCampaign(campaignId: string): Promise<number> {
    const stream = keys.outbox(campaignId);
    await this.ensureGroup(stream);
    try {
      return await this.relayBatches(campaignId, stream);
    } catch (err) {
      // The stream (and its group) was deleted under us: create the group again next pass.
      if (!String((err as Error).message).includes('NOGROUP')) throw err;
      this.groups.delete(stream);
      return 0;
    }
  }

  private async relayBatches(campaignId: string, stream: string): Promise<number> {
    let moved = 0;
    let inFlight: InFlight | undefined;
    let clean = true;
    for (let turn = 0; turn < BATCHES_PER_TURN && this.running; turn++) {
      let entries: StreamEntry[] = [];
      let recovering = false;
      if (inFlight === undefined && this.ownPending.has(campaignId)) {
        entries = await this.readGroup(stream, '0');
        recovering = entries.length > 0;
        if (!recovering) this.ownPending.delete(campaignId);
      }
      if (entries.length === 0 && Date.now() - (this.lastClaimMs.get(stream) ?? 0) >= this.o.claimEveryMs) {
        entries = await this.autoClaim(stream);
      }
      if (entries.length === 0) entries = await this.readGroup(stream, '>');
      if (entries.length === 0) break;
      this.ownPending.add(campaignId);
      // Not durable yet: the entries stay pending and are read again on a later pass.
      if (this.o.durable) await this.o.durable(campaignId).catch((err: Error) => Promise.reject(new NotDurable(err)));
      // An entry deleted while pending comes back without fields: nothing left to publish.
      const gone = entries.filter(([, f]) => f === null).map(([id]) => id);
      const live = entries.filter((e): e is [string, string[]] => e[1] !== null);
      const next: InFlight = {
        gone,
        live: live.length,
        ...(await this.send(live.map(([id, f]) => entryToWin(id, f)))),
      };
      if (inFlight) clean = (await this.settle(stream, inFlight)) && clean;
      inFlight = next;
      moved += live.length;
      if (recovering) {
        clean = (await this.settle(stream, inFlight)) && clean;
        inFlight = undefined;
      }
    }
    if (inFlight) clean = (await this.settle(stream, inFlight)) && clean;
    if (clean && moved > 0) this.ownPending.delete(campaignId);
    return moved;
  }

  /** Waits for a batch's confirms, then XACKs + XDELs what was confirmed; false if some was not. */
  private async settle(stream: string, b: InFlight): Promise<boolean> {
    const confirmed = await b.confirmed;
    const done = [...b.gone, ...confirmed];
    if (done.length > 0) {
      await timers.ack.time(() =>
        this.o.redis
          .pipeline()
          .xack(stream, this.o.group, ...done)
          .xdel(stream, ...done)
          .exec(),
      );
    }
    return confirmed.length === b.live;
  }

  private async readGroup(stream: string, from: '0' | '>'): Promise<StreamEntry[]> {
    const { group, consumer, batchSize } = this.o;
    const res = (await timers.read.time(() =>
      this.o.redis.xreadgroup('GROUP', group, consumer, 'COUNT', batchSize, 'STREAMS', stream, from),
    )) as [string, StreamEntry[]][] | null;
    return res?.[0]?.[1] ?? [];
  }

  /** Takes over entries another consumer (a dead relay) left pending for claimIdleMs. */
  private async autoClaim(stream: string): Promise<StreamEntry[]> {
    this.lastClaimMs.set(stream, Date.now());
    const cursor = this.claimCursor.get(stream) ?? '0-0';
    const res = (await timers.claim.time(() =>
      this.o.redis.xautoclaim(
        stream,
        this.o.group,
        this.o.consumer,
        this.o.claimIdleMs,
        cursor,
        'COUNT',
        this.o.batchSize,
      ),
    )) as [string, StreamEntry[], string[]?];
    this.claimCursor.set(stream, res[0]);
    // More to scan: claim again on the next pass instead of waiting claimEveryMs.
    if (res[0] !== '0-0') this.lastClaimMs.delete(stream);
    else if (Date.now() - (this.lastPruneMs.get(stream) ?? 0) >= PRUNE_EVERY_MS) await this.prune(stream);
    const entries = res[1];
    if (entries.length > 0) {
      this.stats.claimed += entries.length;
      this.o.log.info({ stream, n: entries.length }, 'took over pending outbox entries');
    }
    return entries;
  }

  /**
   * Removes from the group the consumers that hold nothing and have been idle pruneIdleMs: every
   * relay start adds a consumer name, and without this the group's list would only grow.
   */
  private async prune(stream: string): Promise<void> {
    this.lastPruneMs.set(stream, Date.now());
    const consumers = (await this.o.redis.xinfo('CONSUMERS', stream, this.o.group)) as unknown[][];
    for (const c of consumers) {
      const f: Record<string, unknown> = {};
      for (let i = 0; i + 1 < c.length; i += 2) f[String(c[i])] = c[i + 1];
      const name = String(f['name']);
      if (name === this.o.consumer || Number(f['pending']) !== 0 || Number(f['idle']) < this.o.pruneIdleMs) continue;
      await this.o.redis.xgroup('DELCONSUMER', stream, this.o.group, name);
      this.o.log.info({ stream, consumer: name }, 'removed an idle consumer from the group');
    }
  }

  /**
   * Publishes the wins. Returns, wrapped (so that awaiting send does not wait for it), a promise
   * of the stream ids the broker confirmed: all, unless some came back unroutable; rejected when
   * any was nacked or the confirms do not come in time.
   */
  private async send(wins: WinEvent[]): Promise<{ confirmed: Promise<string[]> }> {
    if (wins.length === 0) return { confirmed: Promise.resolve([]) };
    const ch = await this.channel();
    const started = performance.now();
    let settle!: (err: unknown) => void;
    const acked = new Promise<void>((resolve, reject) => {
      let left = wins.length;
      let failed = false;
      settle = (err: unknown) => {
        if (failed) return;
        if (err) {
          failed = true;
          reject(err instanceof Error ? err : new Error(`publish nacked: ${String(err)}`));
        } else if (--left === 0) resolve();
      };
    });
    for (const w of wins) {
      const ok = ch.publish(
        this.o.topology.exchange,
        w.campaignId,
        encodeWin(w),
        {
          persistent: true,
          mandatory: true,
          messageId: w.packetId,
          contentType: WIN_CONTENT_TYPE,
          // Also in the body (trace_id); here so that a queue browser or tap shows it too.
          headers: w.traceId ? { [TRACE_HEADER]: w.traceId } : undefined,
        },
        settle,
      );
      if (!ok) await withTimeout(once(ch, 'drain'), this.o.confirmTimeoutMs, 'channel drain');
    }
    const confirmedAt = timers.publish.since(
      started,
      withTimeout(acked, this.o.confirmTimeoutMs, 'publisher confirms'),
    );
    const confirmed = confirmedAt.then(() => {
      this.stats.published += wins.length;
      this.stats.confirmedBatches++;
      const kept = wins.filter((w) => this.returned.delete(w.packetId));
      if (kept.length > 0) this.o.log.error({ n: kept.length }, 'wins returned as unroutable; kept pending');
      const delivered = wins.filter((w) => !kept.includes(w));
      observePublished(delivered);
      return delivered.map((w) => w.streamId);
    });
    confirmed.catch(() => undefined); // observed here; the caller awaits it later
    return { confirmed };
  }

  /** The confirm channel, (re)connecting with exponential back-off while RabbitMQ is down. */
  private async channel(): Promise<ConfirmChannel> {
    if (this.ch) return this.ch;
    const ch = await withReconnect(
      async () => {
        const { conn, ch: c } = await openConfirmChannel({
          url: this.o.amqpUrl,
          connectionName: this.o.connectionName,
          topology: this.o.topology,
          log: this.o.log,
          attach: (conn, c) => {
            conn.on('close', () => {
              if (this.conn === conn) {
                this.conn = undefined;
                this.ch = undefined;
              }
            });
            // A returned (unroutable) message is still confirmed: remember it, keep its entry.
            c.on('return', (msg: { properties: { messageId?: string } }) => {
              if (msg.properties.messageId) this.returned.add(msg.properties.messageId);
            });
            c.on('close', () => {
              if (this.ch === c) this.ch = undefined;
            });
          },
        });
        this.conn = conn;
        return c;
      },
      { log: this.o.log, maxDelayMs: this.o.maxBackoffMs, running: () => this.running },
    );
    this.stats.reconnects++;
    this.ch = ch;
    return ch;
  }

  private async closeAmqp(): Promise<void> {
    const conn = this.conn;
    this.conn = undefined;
    this.ch = undefined;
    await conn?.close().catch(() => undefined);
  }
}

/** Counts wins the broker took, and how long after the win it took them. */
function observePublished(wins: WinEvent[]): void {
  if (wins.length === 0) return;
  relayPublished.inc(wins.length);
  const now = Date.now();
  let lag = 0;
  for (const w of wins) {
    if (w.wonAtMs === 0n) continue; // an entry without its time: no lag to tell
    lag = Math.max(0, now - Number(w.wonAtMs)) / 1000;
    relayLag.observe(lag);
  }
  relayLastLag.set(lag);
}

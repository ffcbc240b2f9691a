/**
 * grab-svc's in-memory copy of the blocklist and risk scores, so the grab stays one Redis call
 * on Redis Cluster too (the grab script cannot read `rp:blocked` / `rp:risk`: other slots).
 *
 * - At start: SUBSCRIBE to ELIGIBILITY_CHANNEL first, then SSCAN/HSCAN both keys, so no change
 *   made after the copy was taken is missed.
 * - Every message carries the complete state of its users and is applied at once (propagation is
 *   one pub/sub hop, well under a millisecond here). On Redis Cluster two messages published
 *   through different nodes may arrive out of order, so each message also makes the mirror read
 *   those users back from Redis; reads of one key go over one connection in order, and each is
 *   issued after the write its message announces, so the last read wins with the latest state.
 * - A full resync runs when the subscriber connection is ready again (messages sent while it was
 *   down are lost) and every `resyncMs`. Messages arriving during a resync are applied to the old
 *   copy and their users read back again once the new copy is in place, so a resync never undoes
 *   a newer change.
 */
import {
  decodeEligibility,
  ELIGIBILITY_CHANNEL,
  keys,
  type EligibilityState,
  type Logger,
  type RedisClient,
} from '@redpacket/lib';
import { Cluster } from 'ioredis';

/** What the grab script needs to know about a user. */
export interface Verdict {
  blocked: boolean;
  riskScore: number;
}

/** Anything that answers for a user at grab time. */
export interface EligibilityView {
  verdict(userId: string): Verdict;
}

/** The verdict for a user with no block and no risk score. */
export const ELIGIBLE: Verdict = Object.freeze({ blocked: false, riskScore: 0 });

/** For tools and tests that grab without account-svc's blocklist: nobody is blocked or risky. */
export const everyoneEligible: EligibilityView = { verdict: () => ELIGIBLE };

export interface MirrorOptions {
  /** Full resync period (ms); 0 disables the timer. */
  resyncMs?: number;
  /** Keys read per SSCAN/HSCAN call. */
  scanCount?: number;
  /** CLIENT SETNAME of the subscriber connection (single Redis only). */
  connectionName?: string;
}

export class EligibilityMirror implements EligibilityView {
  private blocked = new Set<string>();
  private risk = new Map<string, number>();
  private subscriber: RedisClient | undefined;
  private timer: NodeJS.Timeout | undefined;
  private resyncing: Promise<void> | undefined;
  /** Users announced while a resync runs: read back once the new copy is in place. */
  private touchedDuringResync: Set<string> | undefined;
  private stopped = false;
  /** Full resyncs done (for tests and logs). */
  resyncs = 0;

  constructor(
    private readonly redis: RedisClient,
    private readonly log: Logger,
    private readonly opts: MirrorOptions = {},
  ) {}

  verdict(userId: string): Verdict {
    return { blocked: this.blocked.has(userId), riskScore: this.risk.get(userId) ?? 0 };
  }

  get size(): { blocked: number; risky: number } {
    return { blocked: this.blocked.size, risky: this.risk.size };
  }

  /** Subscribes, then loads the copy; resolves once the copy is complete. */
  async start(): Promise<void> {
    const name = this.opts.connectionName ?? 'grab-svc-eligibility';
    const sub = this.redis instanceof Cluster ? this.redis.duplicate() : this.redis.duplicate({ connectionName: name });
    this.subscriber = sub;
    sub.on('error', (err: Error) => this.log.warn({ err: err.message }, 'eligibility subscriber error'));
    sub.on('message', (channel: string, message: string) => {
      if (channel === ELIGIBILITY_CHANNEL) this.onMessage(message);
    });
    await sub.subscribe(ELIGIBILITY_CHANNEL);
    await this.resync();
    // Registered after the first load: later 'ready' events are reconnects.
    sub.on('ready', () => this.resyncInBackground('subscriber reconnected'));
    if (this.opts.resyncMs) {
      this.timer = setInterval(() => this.resyncInBackground('periodic'), this.opts.resyncMs);
      this.timer.unref();
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.subscriber?.disconnect();
  }

  private resyncInBackground(why: string): void {
    if (this.stopped) return;
    this.resync().then(
      () => this.log.info({ why, ...this.size }, 'eligibility mirror resynced'),
      (err: unknown) => this.log.error({ err, why }, 'eligibility mirror resync failed'),
    );
  }

  /** Rebuilds the copy from Redis; concurrent calls share one run. */
  resync(): Promise<void> {
    this.resyncing ??= this.load().finally(() => {
      this.resyncing = undefined;
    });
    return this.resyncing;
  }

  private async load(): Promise<void> {
    const touched = new Set<string>();
    this.touchedDuringResync = touched;
    try {
      const count = this.opts.scanCount ?? 5000;
      const blocked = new Set<string>();
      const risk = new Map<string, number>();
      let cursor = '0';
      do {
        const [next, members] = await this.redis.sscan(keys.blocked, cursor, 'COUNT', count);
        cursor = next;
        for (const m of members) blocked.add(m);
      } while (cursor !== '0');
      do {
        const [next, pairs] = await this.redis.hscan(keys.risk, cursor, 'COUNT', count);
        cursor = next;
        for (let i = 0; i + 1 < pairs.length; i += 2) risk.set(pairs[i]!, Number(pairs[i + 1]));
      } while (cursor !== '0');
      this.blocked = blocked;
      this.risk = risk;
      this.resyncs++;
    } finally {
      this.touchedDuringResync = undefined;
    }
    if (touched.size) await this.readBack([...touched]);
  }

  private onMessage(message: string): void {
    let rows: EligibilityState[];
    try {
      rows = decodeEligibility(message);
    } catch (err) {
      this.log.error({ err }, 'malformed eligibility message ignored');
      return;
    }
    for (const r of rows) this.apply(r.userId, r.blocked, r.riskScore);
    const users = rows.map((r) => r.userId);
    if (this.touchedDuringResync) for (const u of users) this.touchedDuringResync.add(u);
    this.readBack(users).catch((err: unknown) => this.log.warn({ err }, 'eligibility read-back failed'));
  }

  private apply(userId: string, blocked: boolean, riskScore: number): void {
    if (blocked) this.blocked.add(userId);
    else this.blocked.delete(userId);
    if (riskScore > 0) this.risk.set(userId, riskScore);
    else this.risk.delete(userId);
  }

  /** Reads some users' current state from Redis into the copy. */
  private async readBack(users: string[]): Promise<void> {
    const [member, scores] = await Promise.all([
      this.redis.smismember(keys.blocked, ...users),
      this.redis.hmget(keys.risk, ...users),
    ]);
    users.forEach((u, i) => this.apply(u, member[i] === 1, Number(scores[i] ?? 0)));
  }
}

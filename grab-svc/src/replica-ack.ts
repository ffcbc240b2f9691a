/**
 * REDIS_WAIT_REPLICAS: a WON is answered only once a replica of the campaign's master has it, so a
 * master that crashes right after cannot take an answered win with it (Redis replicates
 * asynchronously; a replica promoted in its place would not know the claim). A barrier that
 * times out or fails says so (fewer replicas than asked), and durability.ts answers UNAVAILABLE.
 * The outbox relay waits the same way before it publishes, so no win a promoted replica lacks
 * ever reaches RabbitMQ.
 *
 * WAIT waits for the writes of the connection it is sent on and blocks that connection meanwhile,
 * so it is never sent on the connection the grabs share: after the grab's reply, a connection of
 * its own writes a marker into the pool's slot (ordered after the grab's writes in the master's
 * replication stream) and WAITs for it, in one pipeline on the pool's master. Group commit: one
 * such barrier at a time per pool, and every win answered while one is in flight waits for the
 * next, which covers them all, so the cost is a replication round trip of latency, not a WAIT a
 * grab.
 */
import { dependencyTimer, keys, withTimeout, type Logger, type RedisClient } from '@redpacket/lib';
import { Cluster } from 'ioredis';
import { replicaWaits } from './metrics.js';

const timer = dependencyTimer('redis', 'replica_wait');
const results = {
  acked: replicaWaits.labels('acked'),
  timedOut: replicaWaits.labels('timed_out'),
  failed: replicaWaits.labels('failed'),
};

/** How long past its own timeout a WAIT may take to answer before the barrier counts as failed. */
export const ANSWER_GRACE_MS = 1000;

export interface ReplicaAckOptions {
  /** A connection (or Cluster client) of its own: WAIT blocks it. */
  redis: RedisClient;
  /** Replicas that must have a win before it is answered (>= 1). */
  replicas: number;
  /** Longest wait; past it the barrier reports the replicas that had acknowledged. */
  timeoutMs: number;
  log: Logger;
}

export interface ReplicaAckStats {
  /** Barriers sent (marker + WAIT pipelines). */
  barriers: number;
  /** Barriers that timed out with fewer replicas than asked (or failed). */
  short: number;
}

interface Group {
  running: Promise<number> | undefined;
  next: Promise<number> | undefined;
}

export class ReplicaAck {
  readonly stats: ReplicaAckStats = { barriers: 0, short: 0 };
  private readonly groups = new Map<string, Group>();

  constructor(private readonly o: ReplicaAckOptions) {
    if (!Number.isInteger(o.replicas) || o.replicas < 1) throw new Error('ReplicaAck needs replicas >= 1');
  }

  /** Replicas a win must reach. */
  get replicas(): number {
    return this.o.replicas;
  }

  /**
   * Resolves, with the number of replicas that acknowledged, once every write to the pool's master
   * issued before this call has reached `replicas` replicas, or after timeoutMs. Never rejects.
   */
  after(pool: string): Promise<number> {
    let g = this.groups.get(pool);
    if (!g) {
      g = { running: undefined, next: undefined };
      this.groups.set(pool, g);
    }
    const current = g.running;
    if (!current) return this.start(g, pool);
    // The barrier in flight may have been written before this caller's grab: wait for the next.
    const group = g;
    group.next ??= current.then(() => {
      group.next = undefined;
      return this.start(group, pool);
    });
    return group.next;
  }

  private start(g: Group, pool: string): Promise<number> {
    const p = this.barrier(pool).finally(() => {
      if (g.running === p) g.running = undefined;
      if (!g.running && !g.next) this.groups.delete(pool);
    });
    g.running = p;
    return p;
  }

  private async barrier(pool: string): Promise<number> {
    this.stats.barriers++;
    try {
      // Timed as one call, a failed command inside the pipeline counted as a failed call.
      const n = await timer.time(async () => {
        // One pipeline, so both go to the master of the marker's slot: the pool's master.
        const sent = this.o.redis
          .pipeline()
          .set(keys.replicaMark(pool), '1', 'PX', 60_000)
          .wait(this.o.replicas, this.o.timeoutMs)
          .exec();
        // WAIT answers by timeoutMs; a master that does not answer at all (stopped, or the
        // connection lost and its commands queued) must not hold the callers: they are told.
        const res = await withTimeout(sent, this.o.timeoutMs + ANSWER_GRACE_MS, 'answer to WAIT');
        const [setErr] = res?.[0] ?? [];
        const [waitErr, acked] = res?.[1] ?? [];
        if (setErr && /^(MOVED|ASK|CLUSTERDOWN)\b/.test(setErr.message) && this.o.redis instanceof Cluster) {
          // The slot moved (a failover): the pipeline went to a node that no longer owns it, whose
          // WAIT says nothing of this pool. ioredis does not follow a MOVED inside a pipeline
          // whose other command succeeded, so the slot map is refreshed here for the next barrier.
          this.o.redis.refreshSlotsCache();
        }
        if (setErr || waitErr) throw setErr ?? waitErr;
        return Number(acked);
      });
      if (n < this.o.replicas) {
        this.stats.short++;
        results.timedOut.inc();
        this.o.log.warn({ pool, acked: n, wanted: this.o.replicas }, 'wins not on enough replicas in time');
      } else {
        results.acked.inc();
      }
      return n;
    } catch (err) {
      this.stats.short++;
      results.failed.inc();
      this.o.log.warn({ pool, err: (err as Error).message }, 'replica wait failed');
      return 0;
    }
  }
}

/**
 * The durability barrier: a WON (or a repeated WON / ALREADY_GRABBED) is answered only once the
 * win is durable under the configured policy; otherwise the caller gets UNAVAILABLE and retries
 * with the same request_id (the grab is idempotent, so the retry returns the same win if it
 * survived, or grabs anew if it did not). Redis is not the only copy of an answered win.
 *
 * Policies (REDIS_DURABILITY):
 * - `aof`: every master runs `appendonly yes` with `appendfsync always`. Redis then writes and
 *   fsyncs a script's effects before it sends any reply of that event-loop turn, so the reply
 *   itself proves durability: no extra round trip on the grab. What is checked is the masters'
 *   configuration, every `checkEveryMs` and at start; while a master is not verified (another
 *   fsync policy, AOF off or failing, unreachable), wins are answered UNAVAILABLE.
 * - `aof-everysec`: the same with `appendfsync everysec` accepted: survives a Redis process
 *   crash (the AOF is written before the reply), not a host crash (up to a second not fsynced).
 * - `replicas`: `REDIS_WAIT_REPLICAS` replicas of the campaign's master have the win (WAIT,
 *   group-committed in ReplicaAck); a wait that times out or fails answers UNAVAILABLE.
 * - `aof+replicas`: both.
 * - `none`: best effort, an explicit opt-in (a Redis crash may lose answered wins).
 */
import { status } from '@grpc/grpc-js';
import { ServiceError, type Logger, type RedisClient } from '@redpacket/lib';
import { Cluster, type Redis } from 'ioredis';
import { durabilityChecks } from './metrics.js';
import type { ReplicaAck } from './replica-ack.js';

export const DURABILITY_POLICIES = ['aof', 'aof-everysec', 'replicas', 'aof+replicas', 'none'] as const;
export type DurabilityPolicy = (typeof DURABILITY_POLICIES)[number];

/** The shipped default: a WON survives a Redis process or host crash on one Redis. */
export const DEFAULT_DURABILITY: DurabilityPolicy = 'aof';
/** How often the masters' AOF configuration is checked. */
export const DEFAULT_AOF_CHECK_MS = 1000;

const RETRY = 'retry with the same request_id';

/** Why a master does not satisfy the AOF policy, or undefined when it does. */
export function aofProblem(info: string, fsync: string | undefined, acceptEverysec: boolean): string | undefined {
  const field = (name: string): string | undefined => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim();
  if (field('aof_enabled') !== '1') return 'appendonly is off';
  if (field('aof_last_write_status') === 'err') return 'its last AOF write failed';
  if (fsync === 'always') return undefined;
  if (fsync === 'everysec' && acceptEverysec) return undefined;
  return `appendfsync is ${fsync ?? 'unknown'}, the policy needs ${acceptEverysec ? 'always or everysec' : 'always'}`;
}

export interface DurabilityOptions {
  policy: DurabilityPolicy;
  /** The grab path's client: its masters are the ones checked (every master of a Cluster). */
  redis: RedisClient;
  /** With `replicas` or `aof+replicas`. */
  replicaAck?: ReplicaAck;
  log: Logger;
  checkEveryMs?: number;
}

export class Durability {
  private aofProblem: string | undefined = 'not checked yet';
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  private readonly checksAof: boolean;

  constructor(private readonly o: DurabilityOptions) {
    this.checksAof = o.policy === 'aof' || o.policy === 'aof-everysec' || o.policy === 'aof+replicas';
    if ((o.policy === 'replicas' || o.policy === 'aof+replicas') && !o.replicaAck) {
      throw new Error(`durability policy ${o.policy} needs REDIS_WAIT_REPLICAS >= 1`);
    }
    if (!this.checksAof) this.aofProblem = undefined;
  }

  get policy(): DurabilityPolicy {
    return this.o.policy;
  }

  /** Why wins are not answered now (AOF policies), or undefined when they are. */
  get problem(): string | undefined {
    return this.aofProblem;
  }

  /** Checks the masters once, then keeps checking them; resolves after the first check. */
  async start(): Promise<void> {
    if (this.o.policy === 'none') {
      this.o.log.warn('REDIS_DURABILITY=none: wins are answered before they are durable; a Redis crash may lose them');
    }
    if (!this.checksAof) return;
    await this.check();
    this.timer = setInterval(() => void this.check(), this.o.checkEveryMs ?? DEFAULT_AOF_CHECK_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One check of every master; never rejects (a failure is a problem, reported). */
  check(): Promise<void> {
    this.checking ??= this.checkMasters().finally(() => {
      this.checking = undefined;
    });
    return this.checking;
  }

  private async checkMasters(): Promise<void> {
    const nodes: Redis[] = this.o.redis instanceof Cluster ? this.o.redis.nodes('master') : [this.o.redis];
    let problem: string | undefined;
    try {
      if (nodes.length === 0) throw new Error('no master known');
      const everysec = this.o.policy === 'aof-everysec';
      for (const node of nodes) {
        const [info, fsync] = await Promise.all([node.info('persistence'), node.config('GET', 'appendfsync')]);
        const why = aofProblem(info, (fsync as string[])[1], everysec);
        if (why) {
          problem = `Redis ${node.options.host}:${node.options.port}: ${why}`;
          break;
        }
      }
    } catch (err) {
      problem = `Redis AOF configuration not readable: ${(err as Error).message}`;
    }
    if (problem !== this.aofProblem) {
      if (problem) this.o.log.error({ problem, policy: this.o.policy }, 'wins are not durable: answered UNAVAILABLE');
      else this.o.log.info({ policy: this.o.policy }, 'Redis AOF verified: wins are durable when answered');
    }
    durabilityChecks.labels(problem ? 'not_durable' : 'durable').inc();
    this.aofProblem = problem;
  }

  /**
   * Resolves once the wins just written to `pools` (pool ids) are durable under the policy;
   * throws UNAVAILABLE otherwise.
   */
  async confirm(pools: string[]): Promise<void> {
    if (this.aofProblem) {
      throw new ServiceError(status.UNAVAILABLE, `win not yet durable (${this.aofProblem}); ${RETRY}`);
    }
    const ack = this.o.replicaAck;
    if (!ack) return;
    const acked = await Promise.all(pools.map((p) => ack.after(p)));
    const short = acked.findIndex((n) => n < ack.replicas);
    if (short >= 0) {
      throw new ServiceError(
        status.UNAVAILABLE,
        `win not yet on ${ack.replicas} replica(s) of its Redis master (${acked[short]} acknowledged); ${RETRY}`,
      );
    }
  }
}

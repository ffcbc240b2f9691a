/**
 * The rate limit decision: campaign flags first (answered without counting), then the
 * in-process cache of buckets already over their limit, then one Lua call for every bucket.
 */
import { dependencyTimer, HotCounter, keys, type Logger, type RedisClient } from '@redpacket/lib';
import { LRUCache } from 'lru-cache';
import { Counter, Registry } from 'prom-client';
import { campaignOf, matchRule, UNIT_MS, UNITS, type Entry, type RateLimitConfig, type Unit } from './config.js';
import { takeTokens, type BucketArg } from './scripts.js';

/** Why a request was refused; also the value of the `x-redpacket-reason` header. */
export type Reason = 'RATE_LIMITED' | 'SOLD_OUT' | 'NOT_STARTED' | 'ENDED';

/** The campaign flag values grab-svc writes into keys.state, and what each answers. */
const FLAG_REASON: Record<string, Reason> = { sold_out: 'SOLD_OUT', not_started: 'NOT_STARTED', ended: 'ENDED' };

export interface DescriptorIn {
  entries: Entry[];
  /** Envoy's per-descriptor limit override, used instead of the configured rule. */
  limit?: { requestsPerUnit: number; unit: Unit } | undefined;
}

export interface DescriptorStatus {
  code: 'OK' | 'OVER_LIMIT';
  limit: { name: string; requestsPerUnit: number; unit: Unit } | undefined;
  remaining: number;
  /** ms until the bucket holds the request's hits again (0 when it does now). */
  resetMs: number;
}

export interface Decision {
  overall: 'OK' | 'OVER_LIMIT';
  statuses: DescriptorStatus[];
  reason: Reason | undefined;
  /** The campaign a flag refusal is about. */
  campaignId: string | undefined;
  retryAfterMs: number;
  /** NOT_STARTED: when the campaign opens (epoch ms), the expiry of its flag. */
  opensAtMs: number | undefined;
}

export interface LimiterOptions {
  redis: RedisClient;
  config: RateLimitConfig;
  log: Logger;
  registry: Registry;
  /** Prefix of the bucket keys, before the domain's hash tag. */
  keyPrefix?: string;
  /** Redis down: allow (true, counted) or fail the call (false: Envoy's failure_mode_deny decides). */
  failOpen?: boolean;
  /** How long a bucket found over its limit is answered from memory, at most (ms). */
  overLimitCacheMs?: number;
  /** How long a campaign flag (or its absence) is answered from memory (ms). */
  flagCacheMs?: number;
  /**
   * An operator's requests_per_unit for a rule id, in place of the file's (the `ratelimit.<rule>`
   * switches, read from the Switches cache: synchronous, no Redis call).
   */
  overrides?: (ruleId: string) => number | undefined;
}

const timers = {
  take: dependencyTimer('redis', 'gateway_take_tokens'),
  flag: dependencyTimer('redis', 'gateway_flag'),
};

/**
 * The `rule` of a decision not made by a configured rule: a campaign's state flag, a request with
 * no limited descriptor, a domain that is not ours.
 */
export const RULE_CAMPAIGN_STATE = 'campaign_state';
export const RULE_NONE = 'none';
export const RULE_OTHER_DOMAIN = 'other_domain';

interface Metrics {
  /** One per request: its overall outcome. */
  decisions: Counter<'outcome'>;
  /** One per rule that had a say in a request: redpacket_ratelimit_decisions_total{rule,result}. */
  ruleDecisions: HotCounter<'rule' | 'result'>;
  redisCalls: Counter<'kind'>;
  cacheHits: Counter<'kind'>;
  shadowOver: Counter<'rule'>;
  redisErrors: Counter<'kind'>;
}

function metrics(registry: Registry): Metrics {
  const c = <L extends string>(name: string, help: string, labelNames: L[]): Counter<L> =>
    new Counter({ name, help, labelNames, registers: [registry] });
  return {
    decisions: c('rls_decisions_total', 'Decisions by outcome', ['outcome']),
    ruleDecisions: new HotCounter({
      name: 'redpacket_ratelimit_decisions_total',
      help:
        'Rate limit decisions by rule (a configured rule id, campaign_state, none, other_domain) and result ' +
        '(ok, over_limit, shadow_over_limit, sold_out, not_started, ended, fail_open, fail_closed)',
      labelNames: ['rule', 'result'] as const,
      registers: [registry],
      maxSeries: 2000,
      overflowLabel: 'rule',
    }),
    redisCalls: c('rls_redis_calls_total', 'Redis round trips by kind (take = the Lua call)', ['kind']),
    cacheHits: c('rls_cache_hits_total', 'Decisions answered from the in-process cache', ['kind']),
    shadowOver: c('rls_shadow_over_limit_total', 'Over the limit of a shadow-mode rule (allowed)', ['rule']),
    redisErrors: c('rls_redis_errors_total', 'Redis failures; fail_open says whether they were allowed', ['kind']),
  };
}

export class UnavailableError extends Error {}

interface OverLimitEntry {
  until: number;
  hits: number;
  /** A request is asking Redis since this time (the entry had expired). */
  asking: number | undefined;
}

/** How long the request asking Redis about an expired over-limit entry stands for the others. */
const ASKING_GRACE_MS = 1000;

interface Flag {
  reason: Reason | undefined;
  /** When the flag expires (epoch ms); for not_started that is the campaign's start. */
  untilMs: number | undefined;
}

/** A descriptor's bucket: the script's argument, and what the status reports about its rule. */
type Bucket = BucketArg & { index: number; name: string; requestsPerUnit: number; unit: Unit };

const OK_NO_LIMIT: DescriptorStatus = { code: 'OK', limit: undefined, remaining: 0, resetMs: 0 };

export class Limiter {
  private readonly redis: RedisClient;
  private config: RateLimitConfig;
  private readonly log: Logger;
  private readonly prefix: string;
  private readonly failOpen: boolean;
  private readonly overLimitCacheMs: number;
  private readonly flagCacheMs: number;
  private readonly overrides: ((ruleId: string) => number | undefined) | undefined;
  /**
   * Bucket key -> until when it is known to lack `hits` tokens (any request of at least that many
   * fails). Once expired, one request asks Redis (`asking`) while the others keep being refused.
   */
  private readonly overLimit = new LRUCache<string, OverLimitEntry>({ max: 200_000 });
  private readonly flags = new LRUCache<string, Flag>({ max: 50_000 });
  private readonly flagLookups = new Map<string, Promise<Flag>>();
  readonly metrics: Metrics;

  constructor(opts: LimiterOptions) {
    this.redis = opts.redis;
    this.config = opts.config;
    this.log = opts.log;
    this.prefix = opts.keyPrefix ?? 'rl:';
    this.failOpen = opts.failOpen ?? true;
    this.overLimitCacheMs = opts.overLimitCacheMs ?? 500;
    this.flagCacheMs = opts.flagCacheMs ?? 500;
    this.overrides = opts.overrides;
    this.metrics = metrics(opts.registry);
  }

  /** Swaps the rules (e.g. on SIGHUP); what was learnt under the old ones is forgotten. */
  setConfig(config: RateLimitConfig): void {
    this.config = config;
    this.overLimit.clear();
  }

  get domain(): string {
    return this.config.domain;
  }

  async decide(domain: string, descriptors: readonly DescriptorIn[], hitsAddend: number): Promise<Decision> {
    const hits = Math.max(1, hitsAddend);
    if (domain !== this.config.domain) {
      // Not ours: envoyproxy/ratelimit answers OK for descriptors without a rule, and so do we.
      this.metrics.decisions.inc({ outcome: 'ok' });
      this.metrics.ruleDecisions.child(RULE_OTHER_DOMAIN, 'ok').inc();
      return this.ok(descriptors.map(() => OK_NO_LIMIT));
    }
    // Cached flags are answered synchronously: no await on the hot path.
    const flagged = this.flagRefusal(descriptors);
    const refusal = flagged instanceof Promise ? await flagged : flagged;
    if (refusal) return refusal;

    const buckets = this.buckets(descriptors);
    const statuses: DescriptorStatus[] = descriptors.map(() => OK_NO_LIMIT);
    if (buckets.length === 0) {
      this.metrics.decisions.inc({ outcome: 'ok' });
      this.metrics.ruleDecisions.child(RULE_NONE, 'ok').inc();
      return this.ok(statuses);
    }
    return this.knownOverLimit(buckets, hits, statuses) ?? this.take(buckets, hits, statuses);
  }

  /**
   * 1. A campaign that cannot be grabbed any more (or yet) is answered without counting: the
   * refusal, or undefined when every campaign named may be grabbed. Synchronous while the flags
   * are cached.
   */
  private flagRefusal(descriptors: readonly DescriptorIn[]): Decision | undefined | Promise<Decision | undefined> {
    const campaigns = descriptors.map((d) => this.campaignOf(d));
    const ids = [...new Set(campaigns)].filter((c): c is string => c !== undefined);
    const from = (i: number): Decision | undefined | Promise<Decision | undefined> => {
      for (; i < ids.length; i++) {
        const c = ids[i]!;
        const cachedOrPending = this.flag(c);
        // One lookup at a time, in order, as the first refusing campaign is the one answered.
        const next = i + 1;
        if (cachedOrPending instanceof Promise)
          return cachedOrPending.then((flag) =>
            flag.reason ? this.flagDecision(descriptors, campaigns, c, flag) : from(next),
          );
        if (cachedOrPending.reason) return this.flagDecision(descriptors, campaigns, c, cachedOrPending);
      }
      return undefined;
    };
    return from(0);
  }

  private flagDecision(
    descriptors: readonly DescriptorIn[],
    campaigns: readonly (string | undefined)[],
    campaignId: string,
    flag: Flag,
  ): Decision {
    const reason = flag.reason as Reason;
    // Only a campaign yet to open is worth retrying, and exactly when it opens.
    const opensAtMs = reason === 'NOT_STARTED' ? flag.untilMs : undefined;
    this.metrics.decisions.inc({ outcome: reason.toLowerCase() });
    this.metrics.ruleDecisions.child(RULE_CAMPAIGN_STATE, reason.toLowerCase()).inc();
    return {
      overall: 'OVER_LIMIT',
      statuses: descriptors.map((_, i) =>
        campaigns[i] === campaignId ? { ...OK_NO_LIMIT, code: 'OVER_LIMIT' } : OK_NO_LIMIT,
      ),
      reason,
      campaignId,
      retryAfterMs: opensAtMs === undefined ? 0 : Math.max(1, opensAtMs - Date.now()),
      opensAtMs,
    };
  }

  /** 2. The buckets, one per descriptor that has a limit. */
  private buckets(descriptors: readonly DescriptorIn[]): Bucket[] {
    const buckets: Bucket[] = [];
    descriptors.forEach((d, index) => {
      let rule = d.limit
        ? { id: `override_${d.limit.unit}_${d.limit.requestsPerUnit}`, ...d.limit, unlimited: false, shadow: false }
        : matchRule(this.config, d.entries);
      // An operator's override (even of an unlimited rule); its rate is in the bucket key below,
      // so the new limit starts from a full bucket of its own and removing it restores the old one.
      const n = rule && !d.limit ? this.overrides?.(rule.id) : undefined;
      if (rule && n !== undefined) rule = { ...rule, requestsPerUnit: n, unlimited: false };
      if (!rule || rule.unlimited) return;
      // Counted per campaign, not per raw path (a query string must not open a new bucket).
      const values = d.entries.map((e) => campaignOf(this.config, e) ?? e.value);
      buckets.push({
        index,
        // The rate is part of the key: changed rules start from full buckets. `s:` marks the
        // bucket as one string (take-tokens-n.lua); hash buckets of older gateways are never read.
        key: `${this.prefix}{${this.config.domain}}:${rule.id}:${rule.requestsPerUnit}/${rule.unit}:s:${values.join('|')}`,
        capacity: rule.requestsPerUnit,
        periodMs: UNIT_MS[rule.unit],
        shadow: rule.shadow,
        name: rule.id,
        requestsPerUnit: rule.requestsPerUnit,
        unit: rule.unit,
      });
    });
    return buckets;
  }

  /**
   * 3. A bucket known to be empty refuses the request from memory: a flood costs no Redis call.
   * The refusal, or undefined when Redis must be asked.
   */
  private knownOverLimit(buckets: Bucket[], hits: number, statuses: DescriptorStatus[]): Decision | undefined {
    const now = Date.now();
    let waitMs = 0;
    const known = buckets.find((b) => {
      const e = b.shadow ? undefined : this.overLimit.get(b.key);
      if (!e || hits < e.hits) return false;
      if (e.until <= now) {
        // Expired: this request asks Redis; concurrent ones are still refused until it answers.
        if (e.asking === undefined || now - e.asking > ASKING_GRACE_MS) {
          e.asking = now;
          return false;
        }
      }
      waitMs = Math.max(0, e.until - now);
      return true;
    });
    if (!known) return undefined;
    this.metrics.cacheHits.inc({ kind: 'over_limit' });
    this.metrics.decisions.inc({ outcome: 'over_limit' });
    this.metrics.ruleDecisions.child(known.name, 'over_limit').inc();
    for (const b of buckets) {
      statuses[b.index] = {
        code: b === known ? 'OVER_LIMIT' : 'OK',
        limit: { name: b.name, requestsPerUnit: b.requestsPerUnit, unit: b.unit },
        remaining: 0,
        resetMs: b === known ? waitMs : 0,
      };
    }
    return { ...this.ok(statuses), overall: 'OVER_LIMIT', reason: 'RATE_LIMITED', retryAfterMs: waitMs };
  }

  /** 4. One Lua call takes the tokens from every bucket, or from none. */
  private async take(buckets: Bucket[], hits: number, statuses: DescriptorStatus[]): Promise<Decision> {
    let taken;
    try {
      this.metrics.redisCalls.inc({ kind: 'take' });
      taken = await timers.take.time(() => takeTokens(this.redis, buckets, hits));
    } catch (err) {
      for (const b of buckets) {
        this.overLimit.delete(b.key);
        this.metrics.ruleDecisions.child(b.name, this.failOpen ? 'fail_open' : 'fail_closed').inc();
      }
      return this.redisFailed('take', err, statuses);
    }
    let retryAfterMs = 0;
    buckets.forEach((b, i) => {
      const r = taken.results[i] ?? { short: false, remaining: 0, waitMs: 0 };
      const over = r.short;
      if (over && b.shadow) this.metrics.shadowOver.inc({ rule: b.name });
      this.metrics.ruleDecisions.child(b.name, over ? (b.shadow ? 'shadow_over_limit' : 'over_limit') : 'ok').inc();
      if (over && !b.shadow) retryAfterMs = Math.max(retryAfterMs, r.waitMs);
      // Empty now (refused, or just emptied by this request): the next ones are answered from memory.
      if (r.waitMs > 0 && !b.shadow && this.overLimitCacheMs > 0) {
        const until = Date.now() + Math.min(r.waitMs, this.overLimitCacheMs);
        this.overLimit.set(b.key, { until, hits, asking: undefined });
      } else {
        this.overLimit.delete(b.key);
      }
      statuses[b.index] = {
        code: over && !b.shadow ? 'OVER_LIMIT' : 'OK',
        limit: { name: b.name, requestsPerUnit: b.requestsPerUnit, unit: b.unit },
        remaining: r.remaining,
        resetMs: r.waitMs,
      };
    });
    if (taken.over) {
      this.metrics.decisions.inc({ outcome: 'over_limit' });
      return { ...this.ok(statuses), overall: 'OVER_LIMIT', reason: 'RATE_LIMITED', retryAfterMs };
    }
    this.metrics.decisions.inc({ outcome: 'ok' });
    return this.ok(statuses);
  }

  private ok(statuses: DescriptorStatus[]): Decision {
    return { overall: 'OK', statuses, reason: undefined, campaignId: undefined, retryAfterMs: 0, opensAtMs: undefined };
  }

  private campaignOf(d: DescriptorIn): string | undefined {
    for (const e of d.entries) {
      const c = campaignOf(this.config, e);
      if (c !== undefined) return c;
    }
    return undefined;
  }

  private redisFailed(kind: string, err: unknown, statuses: DescriptorStatus[]): Decision {
    this.metrics.redisErrors.inc({ kind: this.failOpen ? 'fail_open' : 'fail_closed' });
    this.log.warn({ err: (err as Error).message, kind, failOpen: this.failOpen }, 'redis failed during a decision');
    if (!this.failOpen) throw new UnavailableError(`rate limit store unavailable (${kind})`);
    this.metrics.decisions.inc({ outcome: 'fail_open' });
    return this.ok(statuses);
  }

  /** The campaign's flag, from memory when fresh; concurrent misses share one lookup. */
  private flag(campaignId: string): Flag | Promise<Flag> {
    const cached = this.flags.get(campaignId);
    if (cached) {
      this.metrics.cacheHits.inc({ kind: 'flag' });
      return cached;
    }
    let pending = this.flagLookups.get(campaignId);
    if (!pending) {
      pending = this.lookupFlag(campaignId).finally(() => this.flagLookups.delete(campaignId));
      this.flagLookups.set(campaignId, pending);
    }
    return pending;
  }

  private async lookupFlag(campaignId: string): Promise<Flag> {
    const key = keys.state(campaignId);
    try {
      this.metrics.redisCalls.inc({ kind: 'flag' });
      const res = await timers.flag.time(() => this.redis.pipeline().get(key).pttl(key).exec());
      const value = res?.[0]?.[1];
      const pttl = Number(res?.[1]?.[1] ?? -1);
      const flag: Flag = {
        reason: typeof value === 'string' ? FLAG_REASON[value] : undefined,
        untilMs: pttl > 0 ? Date.now() + pttl : undefined,
      };
      // A "not_started" flag expires at the start: never remember it past that.
      const ttl = pttl > 0 ? Math.min(pttl, this.flagCacheMs) : this.flagCacheMs;
      // lru-cache reads a ttl of 0 as "forever": with the cache off, nothing is kept.
      if (ttl > 0) this.flags.set(campaignId, flag, { ttl });
      return flag;
    } catch (err) {
      this.metrics.redisErrors.inc({ kind: this.failOpen ? 'fail_open' : 'fail_closed' });
      this.metrics.ruleDecisions.child(RULE_CAMPAIGN_STATE, this.failOpen ? 'fail_open' : 'fail_closed').inc();
      this.log.warn({ err: (err as Error).message, campaignId }, 'campaign flag lookup failed');
      if (!this.failOpen) throw new UnavailableError('rate limit store unavailable (flag)');
      return { reason: undefined, untilMs: undefined };
    }
  }
}

export const isUnit = (u: string): u is Unit => (UNITS as readonly string[]).includes(u);

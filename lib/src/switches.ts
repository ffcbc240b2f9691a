/**
 * Degrade switches: runtime flags an operator flips (`redpacket switch set NAME on|off`) to
 * shed load without a restart. All live in one Redis hash (keys.switches: name -> "on"; a
 * switch that is off has no field). Services read them through `Switches`, an in-process copy
 * refreshed every `refreshMs`, so the hot path never waits on Redis and a flip takes effect
 * within a refresh (well under 2 s).
 *
 * Rate limit overrides live in the same hash and cache: "ratelimit.<rule>" -> a number of requests
 * per unit that gateway uses instead of its rules file's (`redpacket switch set ratelimit.<rule> N`,
 * `off` to go back). The rules there are come from keys.rateLimitRules, which gateway writes.
 */
import { status } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { ServiceError } from './errors.js';
import { CAMPAIGN_ID_PATTERN, keys } from './keys.js';
import type { RedisClient } from './redis.js';

/** Every switch there is, with what it does; nothing else can be set. */
export const KNOWN_SWITCHES = {
  'grab.paused': 'grab-svc answers every Grab NOT_STARTED (no packet) without touching any campaign',
  'grab.paused:<campaignId>': 'the same for one campaign only',
  'gift.paused': 'gift-svc stops taking wins from RabbitMQ (they keep queueing, nothing is lost)',
  'awards.queries_disabled': 'GiftService ListMyAwards and ListCampaignAwards answer UNAVAILABLE',
  'spending.paused':
    'AccountService Withdraw and GiftService RedeemPacket answer UNAVAILABLE (consumption paused for the peak); nothing moves',
  'ratelimit.<rule>':
    "gateway: requests_per_unit of that rate limit rule instead of the rules file's (a number; off = the file's)",
} as const;

export type SwitchName =
  'grab.paused' | `grab.paused:${string}` | 'gift.paused' | 'awards.queries_disabled' | 'spending.paused';

/** Switch names of rate limit overrides: this prefix and a rule id of gateway's rules. */
export const RATE_LIMIT_PREFIX = 'ratelimit.';
/** The largest override accepted (as the rules file, an integer). */
export const MAX_RATE_LIMIT_OVERRIDE = 1_000_000_000;
const RULE_ID = /^[\x21-\x7e]{1,200}$/;
const OVERRIDE_VALUE = /^[1-9][0-9]{0,9}$/;

/** The switch that overrides rule `ruleId` (e.g. "route_grab.user" -> "ratelimit.route_grab.user"). */
export const rateLimitSwitch = (ruleId: string): string => `${RATE_LIMIT_PREFIX}${ruleId}`;

/** A rule as gateway registers it: its id and the file's limit. */
export interface RateLimitRuleInfo {
  id: string;
  /** "10/minute", or "unlimited". */
  limit: string;
}

/** Thrown for a switch value that is not allowed; says what is. */
export class BadSwitchValueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BadSwitchValueError';
  }
}

const PER_CAMPAIGN = 'grab.paused:';

/** The switch a Grab on `campaignId` honours besides the global `grab.paused`. */
export const grabPausedFor = (campaignId: string): SwitchName => `${PER_CAMPAIGN}${campaignId}`;

/** Thrown for a name that is no known switch; says which names there are. */
export class UnknownSwitchError extends Error {
  constructor(name: string, why?: string) {
    super(why ?? `unknown switch "${name}"; known switches: ${Object.keys(KNOWN_SWITCHES).join(', ')}`);
    this.name = 'UnknownSwitchError';
  }
}

/** Checks `name` is a known switch (or a per-campaign one with a valid campaign id). */
export function checkSwitchName(name: string): SwitchName {
  if (name in KNOWN_SWITCHES && !name.includes('<')) return name as SwitchName;
  if (name.startsWith(PER_CAMPAIGN) && CAMPAIGN_ID_PATTERN.test(name.slice(PER_CAMPAIGN.length))) {
    return name as SwitchName;
  }
  throw new UnknownSwitchError(name);
}

/** Turns a switch on or off (refuses unknown names before touching Redis). */
export async function setSwitch(redis: RedisClient, name: string, on: boolean): Promise<void> {
  const valid = checkSwitchName(name);
  if (on) await redis.hset(keys.switches, valid, 'on');
  else await redis.hdel(keys.switches, valid);
}

export interface SwitchState {
  name: string;
  on: boolean;
  description: string;
  /** Rate limit overrides: the requests per unit in force instead of the file's. */
  value?: number;
}

/** Every global switch (on or off) and every per-campaign switch that is on, sorted by name. */
export async function listSwitches(redis: RedisClient): Promise<SwitchState[]> {
  const stored = await redis.hgetall(keys.switches);
  const out: SwitchState[] = [];
  for (const [name, description] of Object.entries(KNOWN_SWITCHES)) {
    if (!name.includes('<')) out.push({ name, on: stored[name] === 'on', description });
  }
  for (const [name, value] of Object.entries(stored)) {
    if (name.startsWith(PER_CAMPAIGN) && value === 'on') {
      out.push({ name, on: true, description: KNOWN_SWITCHES['grab.paused:<campaignId>'] });
    }
  }
  // Every rule gateway runs with (overridden or not), and overrides of rules no gateway has now.
  const rules = await redis.hgetall(keys.rateLimitRules);
  const overrides = new Set(Object.keys(stored).filter((n) => n.startsWith(RATE_LIMIT_PREFIX)));
  for (const [rule, limit] of Object.entries(rules)) {
    const name = rateLimitSwitch(rule);
    overrides.delete(name);
    const value = overrideValue(stored[name]);
    out.push({
      name,
      on: value !== undefined,
      description: `gateway rule ${rule}: ${limit} in the rules file; set a number of requests per unit to override`,
      ...(value === undefined ? {} : { value }),
    });
  }
  for (const name of overrides) {
    const value = overrideValue(stored[name]);
    out.push({
      name,
      on: value !== undefined,
      description: 'an override of a rule no gateway has registered (set it off to remove it)',
      ...(value === undefined ? {} : { value }),
    });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

const overrideValue = (v: string | undefined): number | undefined =>
  v !== undefined && OVERRIDE_VALUE.test(v) && Number(v) <= MAX_RATE_LIMIT_OVERRIDE ? Number(v) : undefined;

/**
 * Sets (or, with "off", removes) the override of a gateway rate limit rule. `name` is
 * "ratelimit.<rule>"; `value` a positive integer (requests per unit, the rule's unit) or "off".
 * A bad value, or a rule the gateways have not registered, is refused before anything is written.
 * Returns the value in force now (undefined after "off").
 */
export async function setRateLimitOverride(
  redis: RedisClient,
  name: string,
  value: string,
): Promise<number | undefined> {
  const rule = name.startsWith(RATE_LIMIT_PREFIX) ? name.slice(RATE_LIMIT_PREFIX.length) : '';
  if (!RULE_ID.test(rule)) throw new UnknownSwitchError(name);
  if (value === 'off') {
    await redis.hdel(keys.switches, name);
    return undefined;
  }
  const n = overrideValue(value);
  if (n === undefined) {
    throw new BadSwitchValueError(
      `${name} must be set to a whole number of requests per unit from 1 to ${MAX_RATE_LIMIT_OVERRIDE}, or "off"; ` +
        `not "${value}" (to stop grabs altogether: grab.paused)`,
    );
  }
  const rules = await redis.hgetall(keys.rateLimitRules);
  if (Object.keys(rules).length === 0) {
    throw new UnknownSwitchError(
      name,
      `no gateway has registered its rate limit rules in this Redis (${keys.rateLimitRules} is empty): start gateway first`,
    );
  }
  if (!(rule in rules)) {
    throw new UnknownSwitchError(
      name,
      `unknown rate limit rule "${rule}"; gateway's rules: ${Object.keys(rules).sort().join(', ')}`,
    );
  }
  await redis.hset(keys.switches, name, String(n));
  return n;
}

/**
 * Writes the rules a gateway runs with (at start, on reload, and now and then: a Redis restart
 * loses them), replacing those there: what `switch set ratelimit.<rule>` checks names against.
 */
export async function registerRateLimitRules(redis: RedisClient, rules: RateLimitRuleInfo[]): Promise<void> {
  const m = redis.multi().del(keys.rateLimitRules);
  if (rules.length > 0) m.hset(keys.rateLimitRules, Object.fromEntries(rules.map((r) => [r.id, r.limit])));
  const res = await m.exec();
  const failed = res?.find(([err]) => err);
  if (failed?.[0]) throw failed[0];
}

export interface SwitchesOptions {
  /** How often the copy is refreshed from Redis (default 500 ms). */
  refreshMs?: number;
}

/** A service's cached view of the switches: `start()` loads it, getters are synchronous. */
export class Switches {
  private on = new Set<string>();
  /** Rate limit overrides: rule id -> requests per unit. */
  private limits = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;
  private failing = false;
  private readonly refreshMs: number;

  constructor(
    private readonly redis: RedisClient,
    private readonly log: Logger,
    opts: SwitchesOptions = {},
  ) {
    this.refreshMs = opts.refreshMs ?? 500;
  }

  /** Loads the switches once (a failure is logged; all count as off until Redis answers), then refreshes. */
  async start(): Promise<void> {
    await this.refresh();
    this.timer ??= setInterval(() => void this.refresh(), this.refreshMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Whether a switch is on, as of the last refresh. */
  isOn(name: SwitchName): boolean {
    return this.on.has(name);
  }

  /** The requests per unit an operator set for a gateway rule, if any (`ratelimit.<rule>`). */
  rateLimitOverride(ruleId: string): number | undefined {
    return this.limits.size === 0 ? undefined : this.limits.get(ruleId);
  }

  /** Whether grabs on this campaign are paused (globally or for it alone). */
  grabPaused(campaignId: string): boolean {
    return this.on.has('grab.paused') || this.on.has(grabPausedFor(campaignId));
  }

  /** Re-reads the hash now; on a Redis error the last known values stay (and it is logged). */
  refresh(): Promise<void> {
    // One read at a time: a slow Redis never piles up refreshes.
    this.refreshing ??= this.load().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async load(): Promise<void> {
    try {
      const stored = await this.redis.hgetall(keys.switches);
      const next = new Set(Object.keys(stored).filter((k) => stored[k] === 'on'));
      if (this.failing) this.log.info('switches readable again');
      this.failing = false;
      for (const name of next) if (!this.on.has(name)) this.log.warn({ switch: name }, 'switch on');
      for (const name of this.on) if (!next.has(name)) this.log.info({ switch: name }, 'switch off');
      this.on = next;
      const limits = new Map<string, number>();
      for (const [name, value] of Object.entries(stored)) {
        const n = name.startsWith(RATE_LIMIT_PREFIX) ? overrideValue(value) : undefined;
        if (n !== undefined) limits.set(name.slice(RATE_LIMIT_PREFIX.length), n);
      }
      for (const [rule, n] of limits) {
        if (this.limits.get(rule) !== n) this.log.warn({ rule, requestsPerUnit: n }, 'rate limit override set');
      }
      for (const rule of this.limits.keys()) {
        if (!limits.has(rule)) this.log.info({ rule }, "rate limit override removed; the rules file's limit again");
      }
      this.limits = limits;
    } catch (err) {
      // Logged once per outage, not every refresh.
      if (!this.failing) {
        this.log.error({ err: (err as Error).message }, 'cannot read switches; keeping the last known values');
      }
      this.failing = true;
    }
  }
}

/**
 * UNAVAILABLE while `spending.paused` is on (seed 002: consumption waits out the peak); what
 * every spending call (Withdraw, RedeemPacket) checks before it moves anything.
 */
export function checkSpendingAllowed(switches: Switches | undefined): void {
  if (switches?.isOn('spending.paused')) {
    throw new ServiceError(
      status.UNAVAILABLE,
      'spending is paused for now by the operator (switch spending.paused); nothing moved, retry later with the same request_id',
    );
  }
}

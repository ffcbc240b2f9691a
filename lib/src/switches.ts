/**
 * Degrade switches: runtime flags an operator flips (`redpacket switch set NAME on|off`) to
 * shed load without a restart. All live in one Redis hash (keys.switches: name -> "on"; a
 * switch that is off has no field). Services read them through `Switches`, an in-process copy
 * refreshed every `refreshMs`, so the hot path never waits on Redis and a flip takes effect
 * within a refresh (well under 2 s).
 */
import type { Logger } from 'pino';
import { CAMPAIGN_ID_PATTERN, keys } from './keys.js';
import type { RedisClient } from './redis.js';

/** Every switch there is, with what it does; nothing else can be set. */
export const KNOWN_SWITCHES = {
  'grab.paused': 'grab-svc answers every Grab NOT_STARTED (no packet) without touching any campaign',
  'grab.paused:<campaignId>': 'the same for one campaign only',
  'gift.paused': 'gift-svc stops taking wins from RabbitMQ (they keep queueing, nothing is lost)',
  'awards.queries_disabled': 'GiftService ListMyAwards and ListCampaignAwards answer UNAVAILABLE',
} as const;

export type SwitchName = 'grab.paused' | `grab.paused:${string}` | 'gift.paused' | 'awards.queries_disabled';

const PER_CAMPAIGN = 'grab.paused:';

/** The switch a Grab on `campaignId` honours besides the global `grab.paused`. */
export const grabPausedFor = (campaignId: string): SwitchName => `${PER_CAMPAIGN}${campaignId}`;

/** Thrown for a name that is no known switch; says which names there are. */
export class UnknownSwitchError extends Error {
  constructor(name: string) {
    super(`unknown switch "${name}"; known switches: ${Object.keys(KNOWN_SWITCHES).join(', ')}`);
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
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

export interface SwitchesOptions {
  /** How often the copy is refreshed from Redis (default 500 ms). */
  refreshMs?: number;
}

/** A service's cached view of the switches: `start()` loads it, getters are synchronous. */
export class Switches {
  private on = new Set<string>();
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
    } catch (err) {
      // Logged once per outage, not every refresh.
      if (!this.failing) {
        this.log.error({ err: (err as Error).message }, 'cannot read switches; keeping the last known values');
      }
      this.failing = true;
    }
  }
}

/**
 * The Redis key layout shared by every service. All keys of one campaign carry the
 * hash tag {<campaign>} so they live on one Redis Cluster slot.
 */
export const campaignPrefix = (campaignId: string): string => `rp:{${campaignId}}:`;

/**
 * Sub-pool p of a hot campaign keeps its keys under this id (its own hash tag, so its own slot):
 * pool 0 is the campaign itself, pool p > 0 is "<campaign>.<p>" ('.' never occurs in an id).
 * Every per-campaign key below exists per pool: keys.outbox(poolId(c, p)) and so on.
 */
export const poolId = (campaignId: string, pool: number): string => (pool === 0 ? campaignId : `${campaignId}.${pool}`);

export const keys = {
  /** Hash: the campaign's configuration and closed flag. */
  meta: (c: string) => `${campaignPrefix(c)}meta`,
  /** Hash: claim cursor and counters (claimed, per-outcome counts). */
  stats: (c: string) => `${campaignPrefix(c)}stats`,
  /** Hash: user -> "packetId|amount|requestId|wonAtMs". */
  claims: (c: string) => `${campaignPrefix(c)}claims`,
  /** Batch lists are named batchPrefix + i; the grab script builds the name. */
  batchPrefix: (c: string) => `${campaignPrefix(c)}b:`,
  /** List of "packetId|amount" for batch i. */
  batch: (c: string, i: number) => `${campaignPrefix(c)}b:${i}`,
  /**
   * Hash (the campaign's own, not per pool): packetId -> amount of each packet won before a
   * Redis restore by a user no surviving store knows (see grab-svc's restore.ts). Never issued
   * again; reconcile counts them, settle refunds them.
   */
  lost: (c: string) => `${campaignPrefix(c)}lost`,
  /** Stream: one entry per win, read by the outbox relay. */
  outbox: (c: string) => `${campaignPrefix(c)}outbox`,
  /**
   * String read by gateway: "not_started" (expires at the start), "sold_out" or "ended"
   * when a grab is pointless; absent while the campaign is open.
   */
  state: (c: string) => `${campaignPrefix(c)}state`,
  /** Hash (sub-pools, home pool): user -> failover reservation or route to another pool's win. */
  route: (c: string) => `${campaignPrefix(c)}route`,
  /**
   * String written only to be waited for (grab-svc's REDIS_WAIT_REPLICAS): once a replica has it,
   * it has every earlier write of the pool's master. Expires by itself.
   */
  replicaMark: (c: string) => `${campaignPrefix(c)}replica-mark`,
  /** Sorted set of campaign ids by creation time. */
  campaigns: 'rp:campaigns',
  /**
   * Sorted set of the live campaign ids by creation time: every campaign from its creation until it
   * is settled with its outboxes (all sub-pools) empty. The relay and the settle timer read it whole.
   */
  liveCampaigns: 'rp:campaigns:live',
  /**
   * String: present once liveCampaigns was filled from campaigns (a deployment older than the
   * index); absent, the relay and the settle timer fill it at start.
   */
  liveCampaignsFilled: 'rp:campaigns:live:filled',
  /**
   * Sorted set, every score 0, of "<start ms, 15 digits>|<campaign id>": the campaigns users may
   * still see in ListOpenCampaigns, ordered by start time (ZRANGEBYLEX). Joined at creation;
   * a campaign seen closed, expired, settled or deleted is dropped by the listing itself.
   */
  campaignsByStart: 'rp:campaigns:by-start',
  /**
   * String: present once campaignsByStart was filled from liveCampaigns (a deployment older than
   * that index); absent, grab-svc fills it at the first listing.
   */
  campaignsByStartFilled: 'rp:campaigns:by-start:filled',
  /** Set of blocked user ids (account-svc keeps it). */
  blocked: 'rp:blocked',
  /** Hash user -> risk score (account-svc keeps it). */
  risk: 'rp:risk',
  /**
   * Hash switch name -> "on": the degrade switches (see switches.ts); off = no field. Rate limit
   * overrides are here too: "ratelimit.<rule>" -> requests per unit.
   */
  switches: 'rp:switches',
  /** Hash rule id -> "<requests_per_unit>/<unit>" (or "unlimited"): the rules gateway runs with. */
  rateLimitRules: 'rp:ratelimit:rules',
} as const;

/** Campaign ids: short, URL- and key-safe. */
export const CAMPAIGN_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** The shape of a campaign that decides its key names: batch lists per pool, and its pools. */
export interface CampaignShape {
  batches: number;
  /** 1 for a plain campaign. */
  subPools: number;
}

/**
 * Every key one campaign may have, over all its pools (its `lost` hash included): what to DEL to
 * remove it. The indexes (keys.campaigns, keys.liveCampaigns) list many campaigns and are not here.
 */
export function campaignKeys(campaignId: string, shape: CampaignShape): string[] {
  const out = [keys.lost(campaignId)];
  for (let pool = 0; pool < shape.subPools; pool++) {
    const p = poolId(campaignId, pool);
    out.push(keys.meta(p), keys.stats(p), keys.claims(p), keys.outbox(p), keys.state(p), keys.route(p));
    out.push(keys.replicaMark(p));
    for (let b = 0; b < shape.batches; b++) out.push(keys.batch(p, b));
  }
  return out;
}

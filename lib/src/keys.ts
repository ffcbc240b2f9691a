/**
 * The Redis key layout shared by every service. All keys of one campaign carry the
 * hash tag {<campaign>} so they live on one Redis Cluster slot.
 */
export const campaignPrefix = (campaignId: string): string => `rp:{${campaignId}}:`;

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
  /** Stream: one entry per win, read by the outbox relay. */
  outbox: (c: string) => `${campaignPrefix(c)}outbox`,
  /**
   * String read by gateway: "not_started" (expires at the start), "sold_out" or "ended"
   * when a grab is pointless; absent while the campaign is open.
   */
  state: (c: string) => `${campaignPrefix(c)}state`,
  /** Sorted set of campaign ids by creation time. */
  campaigns: 'rp:campaigns',
  /** Set of blocked user ids (account-svc keeps it). */
  blocked: 'rp:blocked',
  /** Hash user -> risk score (account-svc keeps it). */
  risk: 'rp:risk',
} as const;

/** Campaign ids: short, URL- and key-safe. */
export const CAMPAIGN_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

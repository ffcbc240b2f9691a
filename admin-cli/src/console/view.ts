/** What the console shows of one campaign: batches, money check, delivery and outcomes, as plain JSON. */
import { batchSizes } from '@redpacket/grab-svc/split';
import { CampaignState, type Campaign, type Reconciliation, type Settlement } from '@redpacket/proto';
import type { WatchFrame } from '../commands/watch.js';
import { plain, stateName } from '../format.js';

/** One release of packets: batch i opens at starts_at + i x batch_interval_ms. */
export interface BatchView {
  index: number;
  packets: number;
  opensAt: string;
  released: boolean;
  /** Packets of this batch still in Redis (CampaignStats.batch_stats); claimed = packets - remaining. */
  remaining?: number;
}

/** The batches of `c` as the grab script releases them (grab-svc's own batchSizes). */
export function batchesOf(c: Campaign, nowMs: number): BatchView[] {
  const start = c.startsAt?.getTime() ?? 0;
  const interval = Number(c.batchIntervalMs);
  return batchSizes(c.packetCount, Math.max(1, c.batches)).map((packets, index) => {
    const opens = start + index * interval;
    return { index, packets, opensAt: new Date(opens).toISOString(), released: opens <= nowMs };
  });
}

/** The money check: claimed + remaining = total always; awarded + refund = total once settled. */
export interface MoneyCheck {
  totalCents: string;
  claimedPlusRemainingCents: string;
  claimedPlusRemainingOk: boolean;
  settlement: { awardedCents: string; refundCents: string; ok: boolean } | null;
  reconcile: { consistent: boolean; differences: string[]; at: string } | null;
}

export function moneyCheck(
  f: WatchFrame,
  settlement: Settlement | undefined,
  reconcile: { result: Reconciliation; at: Date } | undefined,
): MoneyCheck {
  const s = f.stats;
  const sum = s.amountClaimedCents + s.amountRemainingCents;
  return {
    totalCents: String(s.amountTotalCents),
    claimedPlusRemainingCents: String(sum),
    claimedPlusRemainingOk: sum === s.amountTotalCents,
    settlement: settlement
      ? {
          awardedCents: String(settlement.amountAwardedCents),
          refundCents: String(settlement.refundCents),
          ok: settlement.amountAwardedCents + settlement.refundCents === settlement.amountTotalCents,
        }
      : null,
    reconcile: reconcile
      ? {
          consistent: reconcile.result.consistent,
          differences: reconcile.result.differences,
          at: reconcile.at.toISOString(),
        }
      : null,
  };
}

/** Everything the page draws for the selected campaign, one SSE message a second. */
export function campaignView(
  c: Campaign,
  f: WatchFrame,
  extra: {
    nowMs: number;
    settlement: Settlement | undefined;
    reconcile: { result: Reconciliation; at: Date } | undefined;
    /** UNAUTHENTICATED answers of grab-svc's Grab (service-wide), undefined when its metrics are unknown. */
    unauthenticated: number | undefined;
    unauthenticatedPerSecond: number | undefined;
  },
): unknown {
  const remaining = new Map(f.stats.batchStats.map((b) => [b.batch, b.remaining]));
  const batches = batchesOf(c, extra.nowMs).map((b) => ({ ...b, remaining: remaining.get(b.index) }));
  const live =
    f.stats.state === CampaignState.CAMPAIGN_STATE_OPEN || f.stats.state === CampaignState.CAMPAIGN_STATE_SCHEDULED;
  const next = live ? batches.find((b) => !b.released) : undefined;
  return {
    campaign: plain(c),
    state: stateName(f.stats.state),
    stats: plain(f.stats),
    batches,
    nextBatchAt: next?.opensAt ?? null,
    delivery: f.delivery ? plain(f.delivery) : null,
    deliveryError: f.deliveryError ?? null,
    grabsPerSecond: { ...f.grabsPerSecond, UNAUTHENTICATED: extra.unauthenticatedPerSecond ?? null },
    deliveredPerSecond: f.deliveredPerSecond ?? null,
    unauthenticated: extra.unauthenticated ?? null,
    money: moneyCheck(f, extra.settlement, extra.reconcile),
  };
}

/**
 * Grab calls grab-svc answered UNAUTHENTICATED, summed from its Prometheus text
 * (redpacket_rpc_total{method=".../Grab",code="UNAUTHENTICATED"}); the label has no campaign.
 */
export function unauthenticatedGrabs(metricsText: string): number {
  let n = 0;
  for (const line of metricsText.split('\n')) {
    if (!line.startsWith('redpacket_rpc_total{')) continue;
    if (!line.includes('GrabService/Grab"') || !line.includes('code="UNAUTHENTICATED"')) continue;
    n += Number(line.slice(line.lastIndexOf(' ') + 1)) || 0;
  }
  return n;
}

/**
 * grab-svc's own metrics: grab outcomes by campaign, counted without slowing the grab, and the
 * outcomes of the replica waits (REDIS_WAIT_REPLICAS).
 */
import { Counter } from 'prom-client';
import { HotCounter, registry, shared, type HotChild } from '@redpacket/lib';
import { Outcome } from '@redpacket/proto';

/** Campaigns counted one by one; later ones count under campaign="_other". */
const MAX_CAMPAIGNS = 2000;

/** The `outcome` label, indexed by Outcome value; one more slot for grabs refused by grab.paused. */
const LABELS = ['unspecified', 'won', 'already_grabbed', 'sold_out', 'not_started', 'ended', 'forbidden', 'paused'];
const PAUSED = LABELS.length - 1;

export const grabOutcomes = shared(
  'redpacket_grab_outcomes_total',
  () =>
    new HotCounter({
      name: 'redpacket_grab_outcomes_total',
      help: 'Grabs answered, by campaign and outcome (paused: answered NOT_STARTED because of the grab.paused switch)',
      labelNames: ['campaign', 'outcome'] as const,
      maxSeries: MAX_CAMPAIGNS * LABELS.length,
      overflowLabel: 'campaign',
    }),
);

/** The children of one campaign by label index: one Map lookup and one addition a grab. */
const byCampaign = shared('redpacket_grab_outcomes_total:children', () => new Map<string, HotChild[]>());

function childrenOf(campaignId: string): HotChild[] {
  let c = byCampaign.get(campaignId);
  if (!c) {
    c = LABELS.map((label) => grabOutcomes.child(campaignId, label));
    // Past the cap these are the "_other" children: asking the HotCounter again finds them.
    if (byCampaign.size < MAX_CAMPAIGNS) byCampaign.set(campaignId, c);
  }
  return c;
}

/** Counts one answered grab. */
export function countGrab(campaignId: string, outcome: Outcome): void {
  childrenOf(campaignId)[outcome]?.inc();
}

/** Counts a grab answered NOT_STARTED because the campaign (or every grab) is paused. */
export function countPausedGrab(campaignId: string): void {
  childrenOf(campaignId)[PAUSED]?.inc();
}

/** How a replica wait (one marker + WAIT barrier, covering every win answered after it) ended. */
export type ReplicaWaitResult = 'acked' | 'timed_out' | 'failed';

export const replicaWaits = shared(
  'redpacket_replica_waits_total',
  () =>
    new Counter({
      name: 'redpacket_replica_waits_total',
      help:
        'REDIS_WAIT_REPLICAS barriers, by result: acked (the replicas asked for had the wins), timed_out ' +
        '(fewer within the timeout) or failed (the call failed); wins are answered WON only when acked',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
);

/** The AOF policies' checks of the masters' configuration, by what they found. */
export const durabilityChecks = shared(
  'redpacket_durability_checks_total',
  () =>
    new Counter({
      name: 'redpacket_durability_checks_total',
      help:
        'REDIS_DURABILITY aof checks of every master, by result: durable, or not_durable (wins answered ' +
        'UNAVAILABLE until the next check finds them durable)',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
);

export const campaignsMissing = shared(
  'redpacket_campaigns_missing_total',
  () =>
    new Counter({
      name: 'redpacket_campaigns_missing_total',
      help:
        'Calls on a campaign MySQL has (not settled) but Redis does not: its Redis state is gone and an ' +
        'operator restores it (redpacket campaign restore <id>); only campaigns with a MySQL row are labelled',
      labelNames: ['campaign'] as const,
      registers: [registry],
    }),
);

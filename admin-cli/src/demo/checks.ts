/** The demo's money check: what Redis, the crowd's own answers, gift-svc and MySQL say must agree. */
import type { CampaignStats, DeliveryStats, Reconciliation, Settlement } from '@redpacket/proto';
import { num, yuan } from '../format.js';
import type { CrowdResult } from './crowd.js';

/** One line of the money check. */
export interface Check {
  what: string;
  ok: boolean;
  detail: string;
}

/** What the checks read: the campaign's total, Redis's stats, the crowd and the pipeline's answers. */
export interface CheckInput {
  totalCents: bigint;
  stats: CampaignStats;
  crowd: CrowdResult;
  delivery?: DeliveryStats | undefined;
  settlement?: Settlement | undefined;
  reconciliation?: Reconciliation | undefined;
}

/** The cents of the users' own WON answers. */
export const wonCents = (crowd: CrowdResult): bigint =>
  [...crowd.wins.values()].reduce((a, w) => a + w.amountCents, 0n);

function totalCheck(total: bigint, s: CampaignStats): Check {
  return {
    what: 'claimed + remaining = total (GetCampaignStats)',
    ok: s.amountClaimedCents + s.amountRemainingCents === total && s.amountTotalCents === total,
    detail: `${yuan(s.amountClaimedCents)} + ${yuan(s.amountRemainingCents)} = ${yuan(s.amountClaimedCents + s.amountRemainingCents)} of ${yuan(total)}`,
  };
}

function answersCheck(s: CampaignStats, crowd: CrowdResult): Check {
  const wonSum = wonCents(crowd);
  return {
    what: "users' own WON answers = claimed",
    ok: wonSum === s.amountClaimedCents && crowd.wins.size === s.packetsClaimed,
    detail: `${num(crowd.wins.size)} winners hold ${yuan(wonSum)}; Redis says ${num(s.packetsClaimed)} packets, ${yuan(s.amountClaimedCents)}`,
  };
}

function onceCheck(crowd: CrowdResult): Check {
  return {
    what: 'one packet per user, no packet twice, retries answered the same',
    ok: crowd.violations.length === 0,
    detail: crowd.violations.length ? crowd.violations.slice(0, 5).join('; ') : 'no violation',
  };
}

function countersCheck(s: CampaignStats, crowd: CrowdResult): Check {
  // the script counts a same-id retry of a win as ALREADY_GRABBED, while the caller sees WON again
  const answers = (k: string): bigint => BigInt(crowd.outcomes[k] ?? 0);
  const counted = s.wonCount + s.alreadyGrabbedCount;
  return {
    what: 'outcome counters = the answers the crowd got',
    ok:
      s.wonCount === BigInt(crowd.wins.size) &&
      counted === answers('WON') + answers('ALREADY_GRABBED') &&
      s.soldOutCount === answers('SOLD_OUT') &&
      s.notStartedCount === answers('NOT_STARTED') &&
      s.endedCount === answers('ENDED') &&
      s.forbiddenCount === answers('FORBIDDEN'),
    detail:
      `won ${num(s.wonCount)} + already ${num(s.alreadyGrabbedCount)} = ${num(counted)} WON/ALREADY_GRABBED answers, ` +
      `sold out ${num(s.soldOutCount)}, not started ${num(s.notStartedCount)}`,
  };
}

/** The checks of gift-svc's delivery, settle and reconcile: only those that ran. */
function pipelineChecks(c: CheckInput): Check[] {
  const { stats: s, delivery, settlement, reconciliation } = c;
  const checks: Check[] = [];
  if (delivery) {
    checks.push({
      what: 'every win delivered into MySQL',
      ok: delivery.delivered === BigInt(s.packetsClaimed) && delivery.deliveredCents === s.amountClaimedCents,
      detail: `${num(delivery.delivered)} awards, ${yuan(delivery.deliveredCents)}; ${num(delivery.deadLettered)} dead letters`,
    });
  }
  if (settlement) {
    checks.push({
      what: 'awarded + refund = total (SettleCampaign)',
      ok: settlement.amountAwardedCents + settlement.refundCents === c.totalCents,
      detail: `${yuan(settlement.amountAwardedCents)} + ${yuan(settlement.refundCents)} = ${yuan(settlement.amountAwardedCents + settlement.refundCents)}`,
    });
  }
  if (reconciliation) {
    checks.push({
      what: 'Redis and MySQL agree (ReconcileCampaign)',
      ok: reconciliation.consistent,
      detail: reconciliation.differences.join('; ') || 'consistent',
    });
  }
  return checks;
}

/** Every check of the money, to the cent. */
export function moneyChecks(c: CheckInput): Check[] {
  return [
    totalCheck(c.totalCents, c.stats),
    answersCheck(c.stats, c.crowd),
    onceCheck(c.crowd),
    countersCheck(c.stats, c.crowd),
    ...pipelineChecks(c),
  ];
}

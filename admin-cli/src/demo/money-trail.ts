/**
 * The demo's money trail: a few winners withdraw part of their award with their own tokens
 * (AccountService.Withdraw), the ledger is audited (AuditLedger), and the report follows the
 * money: deposit → escrow → awards + refund → spent.
 */
import type { AuditLedgerResponse, Settlement } from '@redpacket/proto';
import type { CliContext } from '../context.js';
import { num, yuan } from '../format.js';
import type { Check } from './checks.js';
import type { CrowdResult } from './crowd.js';

/** How many winners withdraw half of their award. */
export const WITHDRAWERS = 3;

/** One winner's withdrawal, with the balance account-svc answered after it. */
export interface Withdrawal {
  userId: string;
  awardCents: bigint;
  amountCents: bigint;
  balanceAfterCents: bigint;
}

/** Where the campaign's money went, as the services answered. */
export interface MoneyTrail {
  /** Deposited into the owner's budget, then debited into the campaign's escrow by CreateCampaign. */
  depositCents: bigint;
  /** Settle's figures: escrow → winners, and escrow → owner. */
  settlement?: Settlement | undefined;
  withdrawals: Withdrawal[];
  audit?: AuditLedgerResponse | undefined;
  /** The steps that failed: reported as failed checks, not fatal. */
  failures: Check[];
}

/** What the trail needs from the run. */
export interface TrailInput {
  demoCtx: CliContext;
  run: string;
  totalCents: bigint;
  /** The wins to withdraw from: only once gift-svc has credited them. */
  crowd: CrowdResult | undefined;
  userIds: string[];
  tokens: string[];
  settlement?: Settlement | undefined;
}

/** The sum of the withdrawals. */
export const spentCents = (t: MoneyTrail): bigint => t.withdrawals.reduce((a, w) => a + w.amountCents, 0n);

/** Withdraws half of the first winners' awards (after delivery), then audits the whole ledger. */
export async function followMoney(i: TrailInput): Promise<MoneyTrail> {
  const trail: MoneyTrail = { depositCents: i.totalCents, settlement: i.settlement, withdrawals: [], failures: [] };
  const account = i.demoCtx.account();
  const winners = [...(i.crowd?.wins ?? [])].filter(([, w]) => w.amountCents >= 2n).slice(0, WITHDRAWERS);
  for (const [n, win] of winners) {
    const userId = i.userIds[n]!;
    const amountCents = win.amountCents / 2n;
    try {
      const mine = account.as(i.tokens[n]!);
      const after = await mine.call(mine.client.withdraw, { amountCents, requestId: `demo-withdraw-${i.run}-${n}` });
      trail.withdrawals.push({
        userId,
        awardCents: win.amountCents,
        amountCents,
        balanceAfterCents: after.balanceCents,
      });
    } catch (err) {
      trail.failures.push({ what: `${userId} withdraws (Withdraw)`, ok: false, detail: (err as Error).message });
    }
  }
  try {
    trail.audit = await account.call(account.client.auditLedger, {});
  } catch (err) {
    trail.failures.push({ what: 'the books balance (AuditLedger)', ok: false, detail: (err as Error).message });
  }
  return trail;
}

/** The trail's checks: the withdrawals left award − withdrawn, and the audit found the books consistent. */
export function trailChecks(t: MoneyTrail): Check[] {
  const checks: Check[] = [];
  if (t.withdrawals.length > 0) {
    const wrong = t.withdrawals.filter((w) => w.balanceAfterCents !== w.awardCents - w.amountCents);
    checks.push({
      what: 'winners withdrew half their award (Withdraw): balance = award - withdrawn',
      ok: wrong.length === 0,
      detail:
        wrong.map((w) => `${w.userId} holds ${yuan(w.balanceAfterCents)} of ${yuan(w.awardCents)}`).join('; ') ||
        `${num(t.withdrawals.length)} withdrawals, ${yuan(spentCents(t))} left the system`,
    });
  }
  if (t.audit) {
    const a = t.audit;
    checks.push({
      what: 'the books balance (AuditLedger)',
      ok: a.consistent,
      detail: a.consistent
        ? `consistent: ${num(a.accountsChecked)} accounts, ${num(a.transfersChecked)} transfers`
        : `${num(a.problems.length)} problem(s): ${a.problems.slice(0, 3).join('; ')}`,
    });
  }
  return [...checks, ...t.failures];
}

/** "deposit ¥10.00 → escrow ¥10.00 → awards ¥9.00 + refund ¥1.00 → spent ¥2.00 (2 withdrawals)". */
export function trailLine(t: MoneyTrail): string {
  const parts = [`deposit ${yuan(t.depositCents)}`, `escrow ${yuan(t.depositCents)}`];
  if (t.settlement) {
    parts.push(`awards ${yuan(t.settlement.amountAwardedCents)} + refund ${yuan(t.settlement.refundCents)}`);
  }
  if (t.withdrawals.length > 0) parts.push(`spent ${yuan(spentCents(t))} (${num(t.withdrawals.length)} withdrawals)`);
  return parts.join(' → ');
}

/** The trail in the report's JSON: cents as strings. */
export function trailJson(t: MoneyTrail) {
  return {
    depositCents: t.depositCents.toString(),
    escrowCents: t.depositCents.toString(),
    awardsCents: t.settlement?.amountAwardedCents.toString() ?? null,
    refundCents: t.settlement?.refundCents.toString() ?? null,
    spentCents: spentCents(t).toString(),
    withdrawals: t.withdrawals.map((w) => ({
      userId: w.userId,
      awardCents: w.awardCents.toString(),
      amountCents: w.amountCents.toString(),
      balanceAfterCents: w.balanceAfterCents.toString(),
    })),
    audit: t.audit
      ? {
          consistent: t.audit.consistent,
          accountsChecked: Number(t.audit.accountsChecked),
          transfersChecked: Number(t.audit.transfersChecked),
          problems: t.audit.problems,
        }
      : null,
  };
}

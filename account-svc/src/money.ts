/**
 * Deposit, Withdraw and AuditLedger: account-svc's calls into the ledger, which alone writes
 * money. Validation names the field; the ledger's typed errors become gRPC statuses here.
 */
import type { Pool } from '@redpacket/db';
import {
  accountId,
  audit,
  BadTransferError,
  EXTERNAL,
  IdempotencyConflictError,
  idempotencyKey,
  InsufficientFundsError,
  kindOf,
  MAX_TRANSFER_CENTS,
  transfer,
  type Transfer,
} from '@redpacket/ledger';
import {
  checkSpendingAllowed,
  failedPrecondition,
  invalidArgument,
  isValidRequestId,
  notFound,
  type Switches,
} from '@redpacket/lib';
import { Account, type AuditLedgerResponse, type DepositRequest, type WithdrawRequest } from '@redpacket/proto';
import { balanceOf, checkUserId, selectUser, toAccount } from './users.js';

/** The longest deposit note (the transfers column). */
export const MAX_NOTE = 255;

function checkAmount(cents: bigint): bigint {
  if (cents <= 0n || cents > MAX_TRANSFER_CENTS) {
    throw invalidArgument('amount_cents', `must be between 1 and ${MAX_TRANSFER_CENTS} cents`);
  }
  return cents;
}

function checkRequestId(id: string): string {
  if (!isValidRequestId(id)) {
    throw invalidArgument(
      'request_id',
      'is required: 1-128 printable ASCII characters without spaces (a repeat returns the first answer)',
    );
  }
  return id;
}

/** Runs a ledger call, turning its expected failures into the statuses of the public contract. */
async function ledgerCall(fn: () => Promise<Transfer>): Promise<Transfer> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof InsufficientFundsError) {
      throw failedPrecondition(
        `insufficient funds: ${err.accountId} holds ${err.balanceCents} cents, ${err.neededCents} needed; nothing moved`,
      );
    }
    if (err instanceof IdempotencyConflictError) throw invalidArgument('request_id', err.message);
    if (err instanceof BadTransferError) throw invalidArgument(err.field, err.message);
    throw err;
  }
}

/** The answer of a money call: the user's account (awards as today) with the ledger balance after it. */
async function answer(pool: Pool, id: string, balanceCents: bigint): Promise<Account> {
  if (kindOf(id) !== 'user') return Account.fromPartial({ accountId: id, balanceCents });
  const userId = id.slice('user:'.length);
  const row = await selectUser(pool, userId);
  if (!row) throw notFound(`user ${userId}`);
  return { ...toAccount(row, await balanceOf(pool, userId)), accountId: id, balanceCents };
}

/** Admin: money entering from `external` into a user, merchant or operator account. */
export async function deposit(pool: Pool, req: DepositRequest): Promise<Account> {
  let kind;
  try {
    kind = kindOf(req.accountId, 'account_id');
  } catch (err) {
    throw invalidArgument('account_id', (err as Error).message.replace(/^account_id: /, ''));
  }
  if (kind === 'escrow' || kind === 'external') {
    throw invalidArgument(
      'account_id',
      'deposits go to user:<id>, merchant:<id> or operator:<id>; an escrow is funded by its campaign',
    );
  }
  if (kind === 'user') {
    const userId = checkUserId(req.accountId.slice('user:'.length), 'account_id');
    if (!(await selectUser(pool, userId))) throw notFound(`user ${userId}`);
  }
  const amountCents = checkAmount(req.amountCents);
  const requestId = checkRequestId(req.requestId);
  if (req.note.length > MAX_NOTE) throw invalidArgument('note', `at most ${MAX_NOTE} characters`);
  const t = await ledgerCall(() =>
    transfer(pool, {
      key: idempotencyKey('deposit', requestId),
      kind: 'deposit',
      from: EXTERNAL,
      to: req.accountId,
      amountCents,
      note: req.note,
    }),
  );
  return answer(pool, t.to, t.toBalanceCents);
}

/** The caller's own balance leaving to `external`; refused while spending.paused is on. */
export async function withdraw(
  pool: Pool,
  switches: Switches | undefined,
  userId: string,
  req: WithdrawRequest,
): Promise<Account> {
  const amountCents = checkAmount(req.amountCents);
  const requestId = checkRequestId(req.requestId);
  checkSpendingAllowed(switches);
  const from = accountId.user(userId);
  if (!(await selectUser(pool, userId))) throw notFound(`user ${userId}`);
  const t = await ledgerCall(() =>
    transfer(pool, {
      key: idempotencyKey('withdrawal', userId, requestId),
      kind: 'withdrawal',
      from,
      to: EXTERNAL,
      amountCents,
    }),
  );
  return answer(pool, from, t.fromBalanceCents);
}

/** Admin: the audit of invariant 8. */
export async function auditLedger(pool: Pool): Promise<AuditLedgerResponse> {
  const r = await audit(pool);
  return {
    consistent: r.consistent,
    accountsChecked: BigInt(r.accountsChecked),
    transfersChecked: BigInt(r.transfersChecked),
    problems: r.problems,
  };
}

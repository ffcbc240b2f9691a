/** Ledger account ids (`user:<id>`, `escrow:<campaign>`, `external`, ...) and their kinds. */

/** What an account is: whose money it holds. */
export type AccountKind = 'user' | 'merchant' | 'operator' | 'escrow' | 'external';

/** The outside world: money entering (deposits) and leaving (withdrawals); it alone may go negative. */
export const EXTERNAL = 'external';

/** The largest single transfer, in cents (as grab-svc's largest campaign total). */
export const MAX_TRANSFER_CENTS = 1_000_000_000_000n;

const KINDS = new Set<AccountKind>(['user', 'merchant', 'operator', 'escrow']);
/** `<kind>:<ref>`, the ref printable ASCII without spaces (user and campaign ids are). */
const ACCOUNT_ID = /^([a-z]+):([\x21-\x7e]{1,150})$/;

/** The account ids of each kind. */
export const accountId = {
  user: (userId: string): string => `user:${userId}`,
  merchant: (merchantId: string): string => `merchant:${merchantId}`,
  operator: (budget: string): string => `operator:${budget}`,
  escrow: (campaignId: string): string => `escrow:${campaignId}`,
} as const;

/** Thrown for an account id, amount or key the ledger refuses; `field` names what was wrong. */
export class BadTransferError extends Error {
  constructor(
    readonly field: string,
    why: string,
  ) {
    super(`${field}: ${why}`);
    this.name = 'BadTransferError';
  }
}

/** The kind of a valid account id; throws BadTransferError naming `field` otherwise. */
export function kindOf(id: string, field = 'account_id'): AccountKind {
  if (id === EXTERNAL) return 'external';
  const m = ACCOUNT_ID.exec(id);
  const kind = m?.[1] as AccountKind | undefined;
  if (!kind || !KINDS.has(kind)) {
    throw new BadTransferError(
      field,
      `"${id.slice(0, 80)}" is no account id: user:<id>, merchant:<id>, operator:<id>, escrow:<campaign> or external`,
    );
  }
  return kind;
}

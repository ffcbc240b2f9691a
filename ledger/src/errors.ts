/** The ledger's expected failures, typed so services map each to its gRPC status. */

/** The debited account holds less than the amount: nothing was written (FAILED_PRECONDITION). */
export class InsufficientFundsError extends Error {
  constructor(
    readonly accountId: string,
    readonly balanceCents: bigint,
    readonly neededCents: bigint,
  ) {
    super(`insufficient funds in ${accountId}: balance ${balanceCents} cents, needs ${neededCents}`);
    this.name = 'InsufficientFundsError';
  }
}

/** The idempotency key was used before for a different transfer: refused, nothing written. */
export class IdempotencyConflictError extends Error {
  constructor(
    readonly key: string,
    first: string,
    asked: string,
  ) {
    super(`idempotency key "${key}" was already used for ${first}; refusing ${asked}`);
    this.name = 'IdempotencyConflictError';
  }
}

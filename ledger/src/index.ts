/** The double-entry ledger: the only code that writes money. */
export { accountId, BadTransferError, EXTERNAL, kindOf, MAX_TRANSFER_CENTS, type AccountKind } from './accounts.js';
export { audit, type AuditReport } from './audit.js';
export { IdempotencyConflictError, InsufficientFundsError } from './errors.js';
export {
  balanceOf,
  idempotencyKey,
  MAX_BATCH,
  MAX_KEY_LENGTH,
  transfer,
  transferBatch,
  transferBatchIn,
  transferIn,
  type BatchRequest,
  type Transfer,
  type TransferItem,
  type TransferKind,
  type TransferRequest,
} from './transfers.js';

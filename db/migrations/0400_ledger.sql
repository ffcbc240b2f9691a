-- The double-entry ledger (written only by the ledger workspace). Accounts keep their balance in
-- the row so reading one is cheap; every change of a balance is one side (entry) of a transfer,
-- so the audit can prove each balance equals its entries.
-- Today's `ledger` table (credit-only award and refund rows written by gift-svc and settle) is
-- left as it is: it is migrated into transfers when awards and refunds move to the ledger.
CREATE TABLE IF NOT EXISTS accounts (
  account_id VARCHAR(160) NOT NULL PRIMARY KEY,
  kind ENUM('user', 'merchant', 'operator', 'escrow', 'external') NOT NULL,
  balance_cents BIGINT NOT NULL DEFAULT 0,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB
-- ;
-- The outside world: money entering (deposits) and leaving (withdrawals). The only account
-- allowed below zero: its balance is minus the money inside the system.
INSERT IGNORE INTO accounts (account_id, kind) VALUES ('external', 'external')
-- ;
-- Transfers: one amount from one account to another; the idempotency key makes a repeated call
-- a no-op that returns the first transfer.
CREATE TABLE IF NOT EXISTS transfers (
  transfer_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  idempotency_key VARCHAR(191) NOT NULL,
  kind VARCHAR(32) NOT NULL,
  debit_account VARCHAR(160) NOT NULL,
  credit_account VARCHAR(160) NOT NULL,
  amount_cents BIGINT NOT NULL,
  note VARCHAR(255) NOT NULL DEFAULT '',
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  UNIQUE KEY transfers_once (idempotency_key),
  KEY transfers_debit (debit_account, transfer_id),
  KEY transfers_credit (credit_account, transfer_id)
) ENGINE=InnoDB
-- ;
-- Entries: one row per side of a transfer (debit negative, credit positive) with the balance the
-- account had right after it, so a replayed request answers what the first one did.
CREATE TABLE IF NOT EXISTS entries (
  entry_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  transfer_id BIGINT NOT NULL,
  account_id VARCHAR(160) NOT NULL,
  amount_cents BIGINT NOT NULL,
  balance_after_cents BIGINT NOT NULL,
  UNIQUE KEY entries_side (transfer_id, account_id),
  KEY entries_account (account_id, entry_id)
) ENGINE=InnoDB

-- Awards: one row per win credited by gift-svc. The primary key (packet id) and the unique
-- (campaign, user) make a redelivered or duplicated win a no-op (INSERT IGNORE).
CREATE TABLE IF NOT EXISTS awards (
  packet_id VARCHAR(32) NOT NULL PRIMARY KEY,
  campaign_id VARCHAR(64) NOT NULL,
  user_id VARCHAR(128) NOT NULL,
  amount_cents BIGINT NOT NULL,
  request_id VARCHAR(128) NOT NULL DEFAULT '',
  won_at DATETIME(3) NOT NULL,
  credited_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  UNIQUE KEY awards_campaign_user (campaign_id, user_id),
  KEY awards_user (user_id, won_at),
  KEY awards_campaign_amount (campaign_id, amount_cents)
) ENGINE=InnoDB
-- ;
-- Ledger: every movement of money to an account, written in the same transaction as the
-- award or settlement it records; (kind, campaign, ref) is unique so nothing is booked twice.
CREATE TABLE IF NOT EXISTS ledger (
  entry_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  account_id VARCHAR(128) NOT NULL,
  campaign_id VARCHAR(64) NOT NULL,
  kind ENUM('award', 'refund') NOT NULL,
  ref VARCHAR(64) NOT NULL,
  amount_cents BIGINT NOT NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  UNIQUE KEY ledger_once (kind, campaign_id, ref),
  KEY ledger_account (account_id, created_at)
) ENGINE=InnoDB

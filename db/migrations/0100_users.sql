-- Users of account-svc: the record of truth for accounts, the blocklist and risk scores
-- (Redis keeps a mirror: rp:blocked and rp:risk, read by the grab script).
CREATE TABLE IF NOT EXISTS users (
  user_id VARCHAR(128) NOT NULL PRIMARY KEY,
  display_name VARCHAR(128) NOT NULL DEFAULT '',
  -- bcrypt; NULL for a device-less account pre-opened without a password.
  password_hash VARCHAR(72) NULL,
  role VARCHAR(16) NOT NULL DEFAULT 'user',
  -- When the account was opened: the token's opened_at claim.
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  risk_score TINYINT UNSIGNED NOT NULL DEFAULT 0,
  blocked TINYINT(1) NOT NULL DEFAULT 0,
  block_reason VARCHAR(256) NOT NULL DEFAULT '',
  blocked_at TIMESTAMP(3) NULL,
  -- Rows the Redis mirror must hold; indexed so a resync reads only those.
  flagged TINYINT(1) GENERATED ALWAYS AS (blocked <> 0 OR risk_score > 0) STORED,
  KEY users_flagged (flagged)
) ENGINE=InnoDB
-- ;
-- Who blocked or unblocked whom, when and why; never updated, only appended.
CREATE TABLE IF NOT EXISTS user_block_events (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  user_id VARCHAR(128) NOT NULL,
  action VARCHAR(8) NOT NULL,
  reason VARCHAR(256) NOT NULL DEFAULT '',
  actor VARCHAR(128) NOT NULL,
  at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  KEY user_block_events_user (user_id, at)
) ENGINE=InnoDB

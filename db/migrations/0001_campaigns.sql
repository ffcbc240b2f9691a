-- Campaigns: the record of truth for what an operator created (Redis keeps the hot state).
CREATE TABLE IF NOT EXISTS campaigns (
  campaign_id VARCHAR(64) NOT NULL PRIMARY KEY,
  name VARCHAR(128) NOT NULL,
  owner_id VARCHAR(128) NOT NULL,
  total_cents BIGINT NOT NULL,
  packet_count INT NOT NULL,
  split TINYINT NOT NULL,
  batches INT NOT NULL,
  batch_interval_ms BIGINT NOT NULL,
  starts_at TIMESTAMP(3) NOT NULL,
  expires_at TIMESTAMP(3) NOT NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  closed_at TIMESTAMP(3) NULL,
  close_reason VARCHAR(256) NOT NULL DEFAULT ''
) ENGINE=InnoDB

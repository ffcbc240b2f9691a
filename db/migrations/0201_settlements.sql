-- Settlements: the refund of a campaign's unclaimed remainder to its owner, at most once.
CREATE TABLE IF NOT EXISTS settlements (
  campaign_id VARCHAR(64) NOT NULL PRIMARY KEY,
  owner_id VARCHAR(128) NOT NULL,
  amount_total_cents BIGINT NOT NULL,
  amount_awarded_cents BIGINT NOT NULL,
  packets_awarded INT NOT NULL,
  refund_cents BIGINT NOT NULL,
  settled_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB
-- ;
-- Dead letters: wins gift-svc could not credit (malformed, or failing after N attempts).
-- The message also sits in the dead-letter queue; this row is what stats count.
CREATE TABLE IF NOT EXISTS dead_letters (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  campaign_id VARCHAR(64) NOT NULL DEFAULT '',
  packet_id VARCHAR(32) NOT NULL DEFAULT '',
  reason VARCHAR(512) NOT NULL,
  attempts INT NOT NULL,
  body VARBINARY(4096) NOT NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  KEY dead_letters_campaign (campaign_id)
) ENGINE=InnoDB

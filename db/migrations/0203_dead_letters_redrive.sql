-- Dead letters are re-driven (GiftService.RedriveDeadLetters), never silently dropped: the row
-- keeps the win's user, amount and ids for the operator to read without decoding the body
-- (empty when it did not decode; rows from before this migration are decoded when listed),
-- and redriven_at once a re-drive credited the win (or found it credited already).
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS user_id VARCHAR(128) NOT NULL DEFAULT '' AFTER packet_id
-- ;
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS amount_cents BIGINT NOT NULL DEFAULT 0 AFTER user_id
-- ;
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS request_id VARCHAR(128) NOT NULL DEFAULT '' AFTER amount_cents
-- ;
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS trace_id VARCHAR(128) NOT NULL DEFAULT '' AFTER request_id
-- ;
-- NULL DEFAULT NULL spelled out: a TIMESTAMP column must never pick up an automatic default.
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS redriven_at TIMESTAMP(3) NULL DEFAULT NULL
-- ;
-- Settle and reconcile ask for a campaign's parked (redriven_at IS NULL) letters, in id order.
CREATE INDEX IF NOT EXISTS dead_letters_parked ON dead_letters (campaign_id, redriven_at, id)
-- ;
-- The new index starts with campaign_id, so the old one only cost writes.
DROP INDEX IF EXISTS dead_letters_campaign ON dead_letters

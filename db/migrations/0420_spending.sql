-- Red packets users send (GrabService.SendPacket) and packet codes redeemed at merchants
-- (GiftService.RedeemPacket). A sent packet's greeting is its campaign's name.
-- send_request_id: set on a campaign a user sent; (owner, request id) is unique, so a repeated
-- send finds the first campaign and funds nothing again. NULL for operators' campaigns (NULLs
-- never collide in a unique key). The key's owner_id prefix also serves the packets-a-day count.
ALTER TABLE campaigns ADD COLUMN IF NOT EXISTS send_request_id VARCHAR(128) NULL
-- ;
CREATE UNIQUE INDEX IF NOT EXISTS campaigns_send_once ON campaigns (owner_id, send_request_id)
-- ;
-- Redemptions: one row per packet code ever redeemed (the primary key), written in the same
-- transaction as its ledger transfer user:<winner> -> merchant:<merchant>.
CREATE TABLE IF NOT EXISTS redemptions (
  packet_id VARCHAR(32) NOT NULL PRIMARY KEY,
  merchant_id VARCHAR(128) NOT NULL,
  user_id VARCHAR(128) NOT NULL,
  amount_cents BIGINT NOT NULL,
  request_id VARCHAR(128) NOT NULL,
  redeemed_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  KEY redemptions_merchant (merchant_id, redeemed_at)
) ENGINE=InnoDB
-- ;
-- RedeemPacket tells a code whose win is parked (not yet credited) from an unknown one.
CREATE INDEX IF NOT EXISTS dead_letters_packet ON dead_letters (packet_id)

-- What RestoreCampaign needs to rebuild a campaign's Redis state exactly from MySQL.
-- packet_seed: every packet id and amount is derived from it (grab-svc's packetsFromSeed), so
-- whoever can read this column can compute every packet code of the campaign: the same people
-- who can read the awards (and the codes in them). Rows from before it are NULL: not restorable.
ALTER TABLE campaigns ADD COLUMN IF NOT EXISTS packet_seed VARBINARY(32) NULL
-- ;
ALTER TABLE campaigns ADD COLUMN IF NOT EXISTS sub_pools INT NOT NULL DEFAULT 1
-- ;
ALTER TABLE campaigns ADD COLUMN IF NOT EXISTS req_pre TINYINT(1) NOT NULL DEFAULT 0
-- ;
ALTER TABLE campaigns ADD COLUMN IF NOT EXISTS max_risk TINYINT UNSIGNED NULL
-- ;
ALTER TABLE campaigns ADD COLUMN IF NOT EXISTS admit_ppm INT NULL

-- ListCampaignAwards pages a campaign's winners in the order they won.
CREATE INDEX IF NOT EXISTS awards_campaign_won ON awards (campaign_id, won_at, packet_id)

/** createGiftServer: wires GiftService handlers to MySQL (and Redis for in-flight counts). */
import { implement, type Logger, type RedisClient, type ServiceEntry, type TokenVerifier } from '@redpacket/lib';
import type { Pool } from '@redpacket/db';
import { GiftServiceService, type GiftServiceServer } from '@redpacket/proto';
import { deliveryStats, listCampaignAwards, listMyAwards } from './awards.js';

export interface GiftServerDeps {
  pool: Pool;
  /** Optional: without it, in_flight is reported as 0. */
  redis?: RedisClient;
  tokens: TokenVerifier;
  log: Logger;
}

export function createGiftServer(deps: GiftServerDeps): ServiceEntry[] {
  const { pool, redis, tokens, log } = deps;
  const implementation = implement<GiftServiceServer>(
    GiftServiceService,
    {
      async listMyAwards(req, call) {
        const who = await tokens.fromMetadata(call.metadata);
        return listMyAwards(pool, who.userId, req);
      },
      async listCampaignAwards(req, call) {
        await tokens.admin(call.metadata);
        return listCampaignAwards(pool, req);
      },
      async getDeliveryStats(req, call) {
        await tokens.admin(call.metadata);
        return deliveryStats(pool, redis, req.campaignId);
      },
    },
    log,
  );
  return [{ name: 'redpacket.v1.GiftService', definition: GiftServiceService, implementation }];
}

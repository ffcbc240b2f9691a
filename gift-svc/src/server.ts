/** createGiftServer: wires GiftService handlers to MySQL (and Redis for in-flight counts). */
import { status } from '@grpc/grpc-js';
import {
  implement,
  ServiceError,
  type Logger,
  type RedisClient,
  type ServiceEntry,
  type Switches,
  type TokenVerifier,
} from '@redpacket/lib';
import type { Pool } from '@redpacket/db';
import { GiftServiceService, type GiftServiceServer } from '@redpacket/proto';
import { deliveryStats, listCampaignAwards, listMyAwards } from './awards.js';

export interface GiftServerDeps {
  pool: Pool;
  /** Optional: without it, in_flight is reported as 0. */
  redis?: RedisClient;
  tokens: TokenVerifier;
  log: Logger;
  /** Degrade switches (awards.queries_disabled); without them the queries are always served. */
  switches?: Switches;
}

/** The award queries are MySQL reads an operator may shed during a rush (awards.queries_disabled). */
function checkQueriesEnabled(switches: Switches | undefined): void {
  if (switches?.isOn('awards.queries_disabled')) {
    throw new ServiceError(
      status.UNAVAILABLE,
      'award queries are disabled for now by the operator (switch awards.queries_disabled); wins are still credited, try again later',
    );
  }
}

export function createGiftServer(deps: GiftServerDeps): ServiceEntry[] {
  const { pool, redis, tokens, log, switches } = deps;
  const implementation = implement<GiftServiceServer>(
    GiftServiceService,
    {
      async listMyAwards(req, call) {
        const who = await tokens.fromMetadata(call.metadata);
        checkQueriesEnabled(switches);
        return listMyAwards(pool, who.userId, req);
      },
      async listCampaignAwards(req, call) {
        await tokens.admin(call.metadata);
        checkQueriesEnabled(switches);
        return listCampaignAwards(pool, req);
      },
      async getDeliveryStats(req, call) {
        await tokens.admin(call.metadata);
        return deliveryStats(pool, redis, req.campaignId);
      },
      async listDeadLetters(_req, call) {
        await tokens.admin(call.metadata);
        throw new ServiceError(status.UNIMPLEMENTED, 'ListDeadLetters is being built');
      },
      async redriveDeadLetters(_req, call) {
        await tokens.admin(call.metadata);
        throw new ServiceError(status.UNIMPLEMENTED, 'RedriveDeadLetters is being built');
      },
    },
    log,
  );
  return [{ name: 'redpacket.v1.GiftService', definition: GiftServiceService, implementation }];
}

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
import { deliveryStats, listCampaignAwards, listCampaignWinners, listMyAwards } from './awards.js';
import { listDeadLetters, redriveDeadLetters, type WinWriter } from './dead-letters.js';
import { redeemPacket } from './redemptions.js';

export interface GiftServerDeps {
  pool: Pool;
  /** Optional: without it, in_flight is reported as 0. */
  redis?: RedisClient;
  tokens: TokenVerifier;
  log: Logger;
  /** Degrade switches (awards.queries_disabled, spending.paused); without them never paused. */
  switches?: Switches;
  /** The writer re-drives credit through; default writeAwards, the consumer's (tests make it fail). */
  write?: WinWriter;
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
  const { pool, redis, tokens, log, switches, write } = deps;
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
      async listCampaignWinners(req, call) {
        await tokens.fromMetadata(call.metadata);
        checkQueriesEnabled(switches);
        return listCampaignWinners(pool, req);
      },
      async getDeliveryStats(req, call) {
        await tokens.admin(call.metadata);
        return deliveryStats(pool, redis, req.campaignId);
      },
      async listDeadLetters(req, call) {
        await tokens.admin(call.metadata);
        return listDeadLetters(pool, req);
      },
      async redriveDeadLetters(req, call) {
        const who = await tokens.admin(call.metadata);
        const res = await redriveDeadLetters(pool, req, write);
        // Compensation moves money: who ran it and what it did is worth a line at info.
        log.info(
          {
            admin: who.userId,
            campaignId: req.campaignId || '*',
            ids: req.deadLetterIds.length,
            redriven: Number(res.redriven),
            credited: Number(res.credited),
            failed: Number(res.failed),
          },
          'dead letters re-driven',
        );
        return res;
      },
      async redeemPacket(req, call) {
        const merchant = await tokens.merchant(call.metadata);
        const res = await redeemPacket(pool, switches, merchant.userId, req);
        if (!res.alreadyRedeemed) {
          log.info(
            { merchant: merchant.userId, packetId: res.packetId, amountCents: String(res.amountCents) },
            'packet redeemed',
          );
        }
        return res;
      },
    },
    log,
  );
  return [{ name: 'redpacket.v1.GiftService', definition: GiftServiceService, implementation }];
}

/** createGrabServer: wires GrabService and AdminService handlers to their dependencies. */
import { implement, type Logger, type RedisClient, type ServiceEntry, type TokenVerifier } from '@redpacket/lib';
import {
  AdminServiceService,
  GrabServiceService,
  type AdminServiceServer,
  type GrabServiceServer,
} from '@redpacket/proto';
import { failedPrecondition } from '@redpacket/lib';
import {
  checkCampaignId,
  closeCampaign,
  getCampaign,
  getStats,
  listCampaigns,
  newCampaignId,
  validateCreate,
  writeCampaign,
} from './campaigns.js';
import type { EligibilityView } from './eligibility-mirror.js';
import { grab } from './grab.js';
import { PoolCounts } from './sub-pools.js';

export interface GrabServerDeps {
  redis: RedisClient;
  /** The blocklist and risk scores, passed into the grab script (see eligibility-mirror.ts). */
  eligibility: EligibilityView;
  tokens: TokenVerifier;
  log: Logger;
}

export function createGrabServer(deps: GrabServerDeps): ServiceEntry[] {
  const { redis, eligibility, tokens, log } = deps;
  const poolCounts = new PoolCounts(redis);

  const grabService = implement<GrabServiceServer>(
    GrabServiceService,
    {
      async grab(req, call) {
        const who = await tokens.fromMetadata(call.metadata);
        return grab(redis, eligibility, who, req, poolCounts);
      },
      async getCampaign(req, call) {
        await tokens.fromMetadata(call.metadata);
        return getCampaign(redis, checkCampaignId(req.campaignId));
      },
    },
    log,
  );

  const adminService = implement<AdminServiceServer>(
    AdminServiceService,
    {
      async createCampaign(req, call) {
        const admin = await tokens.admin(call.metadata);
        const valid = validateCreate(req, Date.now());
        const meta = { ...valid, id: newCampaignId() };
        await writeCampaign(redis, meta);
        log.info(
          { campaignId: meta.id, by: admin.userId, count: meta.count, total: meta.totalCents },
          'campaign created',
        );
        return getCampaign(redis, meta.id);
      },
      async listCampaigns(req, call) {
        await tokens.admin(call.metadata);
        return listCampaigns(redis, req.pageSize, req.pageToken);
      },
      async getCampaignStats(req, call) {
        await tokens.admin(call.metadata);
        return getStats(redis, checkCampaignId(req.campaignId));
      },
      async closeCampaign(req, call) {
        const admin = await tokens.admin(call.metadata);
        const c = await closeCampaign(redis, checkCampaignId(req.campaignId), req.reason);
        log.info({ campaignId: c.campaignId, by: admin.userId }, 'campaign closed');
        return c;
      },
      async settleCampaign(req, call) {
        await tokens.admin(call.metadata);
        await getCampaign(redis, checkCampaignId(req.campaignId));
        throw failedPrecondition('settlement needs the win pipeline (gift-svc and MySQL), not deployed in this build');
      },
      async reconcileCampaign(req, call) {
        await tokens.admin(call.metadata);
        await getCampaign(redis, checkCampaignId(req.campaignId));
        throw failedPrecondition(
          'reconciliation needs the win pipeline (gift-svc and MySQL), not deployed in this build',
        );
      },
    },
    log,
  );

  return [
    { name: 'redpacket.v1.GrabService', definition: GrabServiceService, implementation: grabService },
    { name: 'redpacket.v1.AdminService', definition: AdminServiceService, implementation: adminService },
  ];
}

/** createGrabServer: wires GrabService and AdminService handlers to their dependencies. */
import {
  implement,
  requestIdOf,
  type Logger,
  type RedisClient,
  type ServiceEntry,
  type Switches,
  type TokenVerifier,
} from '@redpacket/lib';
import {
  Outcome,
  AdminServiceService,
  GrabServiceService,
  type AdminServiceServer,
  type GrabServiceServer,
} from '@redpacket/proto';
import { failedPrecondition, ServiceError } from '@redpacket/lib';
import { status } from '@grpc/grpc-js';
import type { Pool } from '@redpacket/db';
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
import { countPausedGrab } from './metrics.js';
import { MissingCampaigns } from './missing-campaigns.js';
import { listOpenCampaigns } from './open-campaigns.js';
import { restoreCampaign } from './restore.js';
import { insertCampaignRow, recordClose, reconcileCampaign, settleCampaign } from './settle.js';
import type { Durability } from './durability.js';
import { PoolCounts } from './sub-pools.js';
import { DEFAULT_SEND_LIMITS, sendPacket, type SendLimits } from './send-packet.js';

export interface GrabServerDeps {
  redis: RedisClient;
  /** The blocklist and risk scores, passed into the grab script (see eligibility-mirror.ts). */
  eligibility: EligibilityView;
  tokens: TokenVerifier;
  log: Logger;
  /** MySQL (campaign rows, settlements, awards); without it settle and reconcile are refused. */
  pool?: Pool;
  /** Told each campaign this server creates (main's relay can be scoped to those). */
  onCampaignCreated?: (campaignId: string) => void;
  /** Degrade switches (grab.paused, grab.paused:<campaignId>); without them grabs are never paused. */
  switches?: Switches;
  /** REDIS_DURABILITY: a win is answered once durable (see durability.ts); absent = at once. */
  durability?: Durability;
  /** Ready messages in the wins queue (RestoreCampaign waits for 0); without it not checked. */
  queueDepth?: () => Promise<number>;
  /** ListOpenCampaigns' "opening soon": campaigns starting within this; default OPENING_SOON_MS (24 h). */
  openingSoonMs?: number;
  /** SendPacket's per-user limits; default DEFAULT_SEND_LIMITS. */
  sendLimits?: SendLimits;
}

const NO_PIPELINE = 'needs the win pipeline (gift-svc and MySQL), not configured in this server';

export function createGrabServer(deps: GrabServerDeps): ServiceEntry[] {
  const { redis, eligibility, tokens, log, pool } = deps;
  const poolCounts = new PoolCounts(redis);
  const missing = pool ? new MissingCampaigns({ pool, log }) : undefined;

  const grabService = implement<GrabServiceServer>(
    GrabServiceService,
    {
      async grab(req, call) {
        const who = await tokens.fromMetadata(call.metadata);
        // Paused by an operator: the cached switches only, no Redis call. NOT_STARTED with no
        // packet and no start time is what clients already handle as "not yet, try later",
        // and the campaign (its counters included) stays untouched.
        if (deps.switches?.grabPaused(checkCampaignId(req.campaignId))) {
          countPausedGrab(req.campaignId);
          return {
            outcome: Outcome.NOT_STARTED,
            packetId: '',
            amountCents: 0n,
            nextBatchAt: undefined,
            campaignId: req.campaignId,
          };
        }
        return grab(redis, eligibility, who, req, poolCounts, requestIdOf(call), deps.durability, missing);
      },
      async getCampaign(req, call) {
        await tokens.fromMetadata(call.metadata);
        const id = checkCampaignId(req.campaignId);
        try {
          return await getCampaign(redis, id);
        } catch (err) {
          if (err instanceof ServiceError && err.code === status.NOT_FOUND) await missing?.check(id);
          throw err;
        }
      },
      async listOpenCampaigns(req, call) {
        await tokens.fromMetadata(call.metadata);
        return listOpenCampaigns(redis, { ...req, windowMs: deps.openingSoonMs });
      },
      async sendPacket(req, call) {
        const who = await tokens.fromMetadata(call.metadata);
        if (!pool) throw failedPrecondition('sending packets needs MySQL (the ledger), not configured in this server');
        const limits = deps.sendLimits ?? DEFAULT_SEND_LIMITS;
        const r = await sendPacket({ redis, pool, limits }, who.userId, req, deps.onCampaignCreated);
        if (r.created) {
          log.info(
            {
              campaignId: r.campaign.campaignId,
              by: who.userId,
              count: r.campaign.packetCount,
              total: String(r.campaign.totalCents),
            },
            'packet sent',
          );
        }
        return r.campaign;
      },
    },
    log,
    // The hot path: its access lines only at debug (pino's level check is all they cost at info).
    { accessLog: { grab: 'debug' } },
  );

  const adminService = implement<AdminServiceServer>(
    AdminServiceService,
    {
      async createCampaign(req, call) {
        const admin = await tokens.admin(call.metadata);
        const valid = validateCreate(req, Date.now());
        const meta = { ...valid, id: newCampaignId() };
        // The MySQL row first: a campaign never exists in Redis without its record of truth.
        if (pool) await insertCampaignRow(pool, meta);
        await writeCampaign(redis, meta);
        deps.onCampaignCreated?.(meta.id);
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
        if (pool) await recordClose(pool, c.campaignId, c.closeReason);
        log.info({ campaignId: c.campaignId, by: admin.userId }, 'campaign closed');
        return c;
      },
      async settleCampaign(req, call) {
        const admin = await tokens.admin(call.metadata);
        const id = checkCampaignId(req.campaignId);
        if (!pool) {
          await getCampaign(redis, id);
          throw failedPrecondition(`settlement ${NO_PIPELINE}`);
        }
        const s = await settleCampaign(redis, pool, id);
        if (!s.alreadySettled) log.info({ campaignId: id, by: admin.userId, refund: String(s.refundCents) }, 'settled');
        return s;
      },
      async reconcileCampaign(req, call) {
        await tokens.admin(call.metadata);
        const id = checkCampaignId(req.campaignId);
        if (!pool) {
          await getCampaign(redis, id);
          throw failedPrecondition(`reconciliation ${NO_PIPELINE}`);
        }
        return reconcileCampaign(redis, pool, id);
      },
      async restoreCampaign(req, call) {
        const admin = await tokens.admin(call.metadata);
        const id = checkCampaignId(req.campaignId);
        if (!pool) throw failedPrecondition(`restore needs MySQL, not configured in this server`);
        const r = await restoreCampaign(redis, pool, id, { allowQueued: req.allowQueued, queueDepth: deps.queueDepth });
        log.warn(
          {
            campaignId: id,
            by: admin.userId,
            claims: r.claimsRestored,
            lost: r.lostWins.length,
            queued: String(r.winsQueued),
          },
          'campaign restored from MySQL',
        );
        return r;
      },
    },
    log,
  );

  return [
    { name: 'redpacket.v1.GrabService', definition: GrabServiceService, implementation: grabService },
    { name: 'redpacket.v1.AdminService', definition: AdminServiceService, implementation: adminService },
  ];
}

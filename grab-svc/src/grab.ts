/** The grab: validate, one script call, map the script's code to a response. */
import { randomUUID } from 'node:crypto';
import { dependencyTimer, notFound, invalidArgument, poolId, type Identity, type RedisClient } from '@redpacket/lib';
import { Outcome, type GrabRequest, type GrabResponse } from '@redpacket/proto';
import { checkCampaignId } from './campaigns.js';
import { GrabCode } from './grab-code.js';
import type { EligibilityView } from './eligibility-mirror.js';
import type { Durability } from './durability.js';
import type { MissingCampaigns } from './missing-campaigns.js';
import { grabScript, type GrabReply } from './scripts.js';
import { countGrab } from './metrics.js';
import { grabPooled, type PoolCounts } from './sub-pools.js';

const scriptTimer = dependencyTimer('redis', 'grab_script');
const pooledTimer = dependencyTimer('redis', 'grab_pooled');

/** Codes a client sees; Failover and Pending never leave grabPooled. */
const OUTCOME_BY_CODE: Record<number, Outcome> = {
  [GrabCode.Won]: Outcome.WON,
  [GrabCode.AlreadyGrabbed]: Outcome.ALREADY_GRABBED,
  [GrabCode.SoldOut]: Outcome.SOLD_OUT,
  [GrabCode.NotStarted]: Outcome.NOT_STARTED,
  [GrabCode.Ended]: Outcome.ENDED,
  [GrabCode.Forbidden]: Outcome.FORBIDDEN,
};

/** Request ids end up inside the claim record, so '|' and spaces are out. */
const REQUEST_ID_PATTERN = /^[A-Za-z0-9_.:-]{0,128}$/;

export function toGrabResponse(campaignId: string, reply: GrabReply): GrabResponse {
  const [code, packetId, amount, nextMs] = reply;
  if (code === GrabCode.NoSuchCampaign) throw notFound(`campaign ${campaignId}`);
  const outcome = OUTCOME_BY_CODE[code];
  if (outcome === undefined) throw new Error(`grab script returned unknown code ${code}`);
  return {
    outcome,
    packetId,
    amountCents: BigInt(amount),
    nextBatchAt: nextMs > 0 ? new Date(nextMs) : undefined,
    campaignId,
  };
}

export async function grab(
  redis: RedisClient,
  eligibility: EligibilityView,
  who: Identity,
  req: GrabRequest,
  poolCounts?: PoolCounts,
  /** The edge's x-request-id, carried into the outbox entry of a win (and on to gift-svc). */
  traceId = '',
  /** The durability barrier; without it a win is answered as soon as Redis has it. */
  durability?: Durability,
  /** Tells a campaign whose Redis state is gone from an unknown one (UNAVAILABLE, not NOT_FOUND). */
  missing?: MissingCampaigns,
): Promise<GrabResponse> {
  checkCampaignId(req.campaignId);
  if (!REQUEST_ID_PATTERN.test(req.requestId)) {
    throw invalidArgument('request_id', 'must be at most 128 characters of [A-Za-z0-9_.:-]');
  }
  // Without a client id every call is a new request; only a repeated id is a retry.
  const requestId = req.requestId || `srv-${randomUUID()}`;
  const verdict = eligibility.verdict(who.userId);
  const pools = poolCounts ? await poolCounts.get(req.campaignId) : 1;
  const reply =
    pools > 1
      ? await pooledTimer.time(() =>
          grabPooled(redis, {
            campaignId: req.campaignId,
            pools,
            userId: who.userId,
            requestId,
            openedAtMs: who.openedAtMs,
            verdict,
            traceId,
          }),
        )
      : await scriptTimer.time(() =>
          grabScript(redis, req.campaignId, who.userId, requestId, who.openedAtMs, verdict, 0, 1, traceId),
        );
  if (durability && (reply[0] === GrabCode.Won || reply[0] === GrabCode.AlreadyGrabbed)) {
    // A win (or its repetition) is answered only once it is durable: which pool took it is not
    // reported with sub-pools, so every pool's master is waited for (one barrier each, shared).
    // An ALREADY_GRABBED is held too: it repeats a win the client may not have heard of.
    await durability.confirm(Array.from({ length: pools }, (_, p) => poolId(req.campaignId, p)));
  }
  if (reply[0] === GrabCode.NoSuchCampaign) await missing?.check(req.campaignId);
  const res = toGrabResponse(req.campaignId, reply);
  countGrab(req.campaignId, res.outcome);
  return res;
}

/** The timer that settles expired (or closed) campaigns by itself once their wins are credited. */
import { ServiceError, type Logger, type RedisClient } from '@redpacket/lib';
import type { Pool } from '@redpacket/db';
import { status } from '@grpc/grpc-js';
import { fillLiveIndex, pruneLive, unsettledCampaigns } from './campaign-index.js';
import { loadMeta } from './campaigns.js';
import { settleCampaign } from './settle.js';

export interface SettleTimerOptions {
  redis: RedisClient;
  pool: Pool;
  log: Logger;
  everyMs?: number;
  /** Which campaigns to consider; default: every unsettled campaign in the live index. */
  campaigns?: () => Promise<string[]>;
}

/** One pass: tries to settle every unsettled campaign that has ended; returns the ids settled. */
export async function settleEnded(o: SettleTimerOptions, nowMs = Date.now()): Promise<string[]> {
  const settled: string[] = [];
  for (const id of await (o.campaigns ? o.campaigns() : unsettledCampaigns(o.redis))) {
    const meta = await loadMeta(o.redis, id).catch(() => undefined);
    if (!meta || (!meta.closed && nowMs < meta.expiresMs)) continue;
    try {
      const s = await settleCampaign(o.redis, o.pool, id);
      if (!s.alreadySettled) {
        o.log.info({ campaignId: id, refundCents: String(s.refundCents) }, 'campaign settled');
        settled.push(id);
      }
      // Its outboxes are most likely empty already: out of the live index now, not a pass later.
      await pruneLive(o.redis, [id], nowMs);
    } catch (err) {
      // Wins still in flight: the next pass tries again.
      if (err instanceof ServiceError && err.code === status.FAILED_PRECONDITION) continue;
      o.log.warn({ campaignId: id, err: (err as Error).message }, 'automatic settlement failed');
    }
  }
  return settled;
}

/**
 * Runs settleEnded every `everyMs` (default 10 s), one pass at a time, the live index filled first
 * on a deployment older than it; returns a stop function.
 */
export function startSettleTimer(o: SettleTimerOptions): () => Promise<void> {
  let pass: Promise<unknown> = Promise.resolve();
  let indexFilled = o.campaigns !== undefined;
  const run = async (): Promise<string[]> => {
    if (!indexFilled) {
      await fillLiveIndex(o.redis);
      indexFilled = true;
    }
    return settleEnded(o);
  };
  const timer = setInterval(() => {
    pass = pass.then(run).catch((err: Error) => o.log.warn({ err: err.message }, 'settle pass'));
  }, o.everyMs ?? 10_000);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await pass;
  };
}

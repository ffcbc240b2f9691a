/**
 * A campaign MySQL says exists but Redis does not know: its Redis state is gone (a Redis that
 * lost everything), and the answer is UNAVAILABLE naming the restore, not NOT_FOUND. Asked only
 * after the grab script found no campaign, so a campaign that exists costs nothing more.
 */
import { status } from '@grpc/grpc-js';
import { ServiceError, type Logger } from '@redpacket/lib';
import type { Pool } from '@redpacket/db';
import type { RowDataPacket } from 'mysql2/promise';
import { campaignsMissing } from './metrics.js';

export interface MissingCampaignsOptions {
  pool: Pool;
  log: Logger;
  /** How long an answer of MySQL (there or not) is reused: random ids cannot hammer MySQL. */
  ttlMs?: number;
  /** Campaign ids remembered at most (the cache is dropped whole when full). */
  max?: number;
  /** At most one warn line per campaign this often. */
  warnEveryMs?: number;
}

interface Entry {
  at: number;
  missing: Promise<boolean>;
}

/** Looks up (cached) whether a campaign unknown to Redis has a MySQL row not yet settled. */
export class MissingCampaigns {
  private readonly seen = new Map<string, Entry>();
  private readonly warned = new Map<string, number>();
  private readonly o: Required<MissingCampaignsOptions>;

  constructor(opts: MissingCampaignsOptions) {
    this.o = { ttlMs: 3000, max: 10_000, warnEveryMs: 60_000, ...opts };
  }

  /** Throws UNAVAILABLE when `id` has lost its Redis state; returns when it is simply unknown. */
  async check(id: string): Promise<void> {
    if (!(await this.lookup(id))) return;
    campaignsMissing.inc({ campaign: id });
    const now = Date.now();
    if (now - (this.warned.get(id) ?? -Infinity) >= this.o.warnEveryMs) {
      if (this.warned.size >= this.o.max) this.warned.clear();
      this.warned.set(id, now);
      this.o.log.warn({ campaignId: id }, 'campaign exists in MySQL but its Redis state is gone: restore it');
    }
    throw new ServiceError(
      status.UNAVAILABLE,
      `campaign ${id} exists in MySQL but its Redis state is gone; an operator restores it: redpacket campaign restore ${id}`,
    );
  }

  private lookup(id: string): Promise<boolean> {
    const now = Date.now();
    const hit = this.seen.get(id);
    if (hit && now - hit.at < this.o.ttlMs) return hit.missing;
    if (this.seen.size >= this.o.max) this.seen.clear();
    // The promise is what is cached: concurrent grabs on one id share a single query.
    const missing = this.query(id);
    this.seen.set(id, { at: now, missing });
    missing.catch(() => this.seen.delete(id));
    return missing;
  }

  private async query(id: string): Promise<boolean> {
    const [rows] = await this.o.pool.query<RowDataPacket[]>(
      'SELECT s.campaign_id AS settled FROM campaigns c LEFT JOIN settlements s USING (campaign_id) ' +
        'WHERE c.campaign_id = ?',
      [id],
    );
    return rows.length > 0 && rows[0]!['settled'] === null;
  }
}

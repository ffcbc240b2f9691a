/** What grab-svc's benchmarks share: their campaigns, and the durability policy they run with. */
import type { Metadata } from '@grpc/grpc-js';
import type { Pool } from '@redpacket/db';
import { depositBudget } from '@redpacket/ledger/testing';
import { call } from '@redpacket/lib/testing';
import { Split, type AdminServiceClient } from '@redpacket/proto';

/**
 * grab-svc's REDIS_DURABILITY in a benchmark: `none` unless set, as the development Redis (and
 * the clusters the benchmarks start) keep no AOF; `npm run bench:durability` measures the policies.
 */
export const benchDurability = (env: NodeJS.ProcessEnv): string => env['REDIS_DURABILITY'] ?? 'none';

export interface BenchCampaign {
  name: string;
  /** One-yuan packets, split at random, all released at once, open for an hour. */
  packetCount: number;
  subPools?: number;
  /**
   * The MySQL of the grab-svc (CreateCampaign debits the owner's budget there): the budget is
   * deposited first, as a test does.
   */
  fundFrom?: Pool;
}

/** Creates a campaign through AdminService; its id and how long CreateCampaign took (ms). */
export async function createBenchCampaign(
  admin: AdminServiceClient,
  adminMd: Metadata,
  c: BenchCampaign,
): Promise<{ id: string; ms: number }> {
  if (c.fundFrom) await depositBudget(c.fundFrom, 'bench-ops', BigInt(c.packetCount) * 100n);
  const t0 = performance.now();
  const res = await call(
    admin.createCampaign,
    admin,
    {
      name: c.name,
      totalCents: BigInt(c.packetCount) * 100n,
      packetCount: c.packetCount,
      split: Split.RANDOM,
      batches: 1,
      batchIntervalMs: 0n,
      startsAt: undefined,
      expiresAt: new Date(Date.now() + 3600_000),
      ownerId: 'bench-ops',
      eligibility: undefined,
      ...(c.subPools !== undefined ? { subPools: c.subPools } : {}),
    },
    adminMd,
  );
  return { id: res.campaignId, ms: performance.now() - t0 };
}

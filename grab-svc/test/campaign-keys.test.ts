/**
 * campaignKeys against what grab-svc really writes: a 2-pool campaign written by writeCampaign
 * into a Redis database of this file's own, grabbed in both pools (the grab script), one user
 * failed over to the other pool (take and route scripts), a replica barrier (the marker); then
 * every key SCAN finds under the campaign's hash tags must be one campaignKeys lists.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { campaignKeys, createLogger, keys, poolId } from '@redpacket/lib';
import { deleteKeys, requireRedis, testRedisDb } from '@redpacket/lib/testing';
import { Split } from '@redpacket/proto';
import { validateCreate, writeCampaign, type CampaignMeta } from '../src/campaigns.js';
import { ELIGIBLE } from '../src/eligibility-mirror.js';
import { ReplicaAck } from '../src/replica-ack.js';
import { GrabCode } from '../src/grab-code.js';
import { registerScripts } from '../src/scripts.js';
import { grabPooled, homePool } from '../src/sub-pools.js';

const OWN_DB_URL = testRedisDb(9);
let redis: Redis;
let meta: CampaignMeta;
const run = randomBytes(4).toString('hex');

beforeAll(async () => {
  redis = await requireRedis(OWN_DB_URL);
  registerScripts(redis);
});
afterAll(async () => {
  if (meta) {
    await deleteKeys(redis, `rp:{${meta.id}}:*`);
    await deleteKeys(redis, `rp:{${meta.id}.*}:*`);
    await redis.zrem(keys.campaigns, meta.id);
    await redis.zrem(keys.liveCampaigns, meta.id);
  }
  await redis?.quit();
});

async function scan(pattern: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    found.push(...batch);
  } while (cursor !== '0');
  return found;
}

/** A user id of this run whose home is `pool` of 2. */
function userAt(pool: number, tag: string): string {
  for (let k = 0; ; k++) {
    const id = `${run}-${tag}-${k}`;
    if (homePool(id, 2) === pool) return id;
  }
}

describe('campaignKeys', () => {
  it('lists every key the scripts and writeCampaign write for a 2-pool campaign', async () => {
    const now = Date.now();
    const valid = validateCreate(
      {
        name: 'campaign keys',
        totalCents: 1000n,
        packetCount: 8,
        split: Split.RANDOM,
        batches: 2,
        batchIntervalMs: 1n,
        startsAt: new Date(now - 1000),
        expiresAt: new Date(now + 600_000),
        ownerId: 'owner',
        eligibility: undefined,
        subPools: 2,
      },
      now,
    );
    meta = { ...valid, id: `ck${run}` };
    await writeCampaign(redis, meta);

    // pool 1 has 4 packets: its fifth home user fails over and takes one of pool 0's
    const grab = (userId: string) =>
      grabPooled(redis, {
        campaignId: meta.id,
        pools: 2,
        userId,
        requestId: `r-${userId}`,
        openedAtMs: undefined,
        verdict: ELIGIBLE,
      });
    const outcomes: number[] = [];
    for (let i = 0; i < 5; i++) outcomes.push((await grab(userAt(1, `one${i}`)))[0]);
    outcomes.push((await grab(userAt(0, 'zero')))[0]);
    expect(outcomes).toEqual(Array<number>(6).fill(GrabCode.Won));
    const ack = new ReplicaAck({ redis, replicas: 1, timeoutMs: 20, log: createLogger('test', 'silent') });
    for (let p = 0; p < 2; p++) await ack.after(poolId(meta.id, p));

    const listed = campaignKeys(meta.id, { batches: 2, subPools: 2 });
    const written = [...(await scan(`rp:{${meta.id}}*`)), ...(await scan(`rp:{${meta.id}.1}*`))];
    // the keys a test would be most likely to miss by hand are there
    for (const p of [meta.id, poolId(meta.id, 1)]) {
      for (const k of [keys.meta(p), keys.stats(p), keys.claims(p), keys.outbox(p), keys.replicaMark(p)]) {
        expect(written).toContain(k);
      }
    }
    expect(written).toContain(keys.route(poolId(meta.id, 1)));
    expect(written.filter((k) => !listed.includes(k))).toEqual([]);
    expect(listed).toContain(keys.lost(meta.id));
    expect(new Set(listed).size).toBe(listed.length);

    // and DEL of the list removes the campaign whole
    await redis.del(...listed.filter((k) => k.includes(`{${meta.id}}`)));
    await redis.del(...listed.filter((k) => k.includes(`{${meta.id}.1}`)));
    expect([...(await scan(`rp:{${meta.id}}*`)), ...(await scan(`rp:{${meta.id}.1}*`))]).toEqual([]);
  });
});

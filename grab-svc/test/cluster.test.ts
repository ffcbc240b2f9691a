import { keys } from '@redpacket/lib';
import { bearer, call, startRedisCluster, type TestRedisCluster } from '@redpacket/lib/testing';
import { Outcome } from '@redpacket/proto';
import type { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from './harness.js';
import { raceProof } from './race.js';

let cluster: TestRedisCluster;
let h: Harness;
beforeAll(async () => {
  cluster = await startRedisCluster();
  h = await startHarness({ clusterNodes: cluster.nodes });
});
afterAll(async () => {
  await h?.close();
  await cluster?.stop();
});

/** The port of the master that serves a key's slot. */
async function masterOf(key: string): Promise<number> {
  const c = h.redis as Cluster;
  const slot = Number(await c.cluster('KEYSLOT', key));
  for (const [from, to, master] of (await c.cluster('SLOTS')) as unknown as [number, number, [string, number]][]) {
    if (slot >= from && slot <= to) return master[1];
  }
  throw new Error(`slot ${slot} not served`);
}

describe('grab-svc on a Redis Cluster (3 masters, 3 replicas)', () => {
  it('the race: 5,000 packets, 10,000 users each grabbing twice, all at once', async () => {
    await raceProof(h);
  });

  it('the race with 4 sub-pools on 4 slots: one win per user across pools', async () => {
    await raceProof(h, { subPools: 4 });
  });

  it('campaigns land on different masters, and each grab stays on its campaign’s master', async () => {
    const byMaster = new Map<number, string>();
    for (let i = 0; i < 40 && byMaster.size < 3; i++) {
      const c = await h.create({ packetCount: 3, totalCents: 300n });
      byMaster.set(await masterOf(keys.meta(c.campaignId)), c.campaignId);
    }
    expect(byMaster.size).toBe(3);
    // Listing reads campaigns from all three masters.
    const listed = await call(h.admin.listCampaigns, h.admin, { pageSize: 500, pageToken: '' }, bearer(h.adminToken));
    expect(listed.campaigns.map((c) => c.campaignId)).toEqual(expect.arrayContaining([...byMaster.values()]));
    for (const [port, id] of byMaster) {
      const won = await h.grabAs(id, `${h.run}-m${port}`);
      expect(won.outcome).toBe(Outcome.WON);
      // The master itself holds the claim and the outbox entry (a plain connection, no redirects).
      const node = cluster.node(port);
      expect(await node.hget(keys.claims(id), `${h.run}-m${port}`)).toMatch(new RegExp(`^${won.packetId}\\|`));
      expect(await node.xlen(keys.outbox(id))).toBe(1);
    }
  });

  it('blocked and risky users are FORBIDDEN, and unblocking applies, through the pub/sub mirror', async () => {
    const c = await h.create({ eligibility: { requirePreOpened: false, maxRiskScore: 50, admissionPpm: undefined } });
    const blocked = `${h.run}-blk`;
    const risky = `${h.run}-risky`;
    await h.setEligibility([
      { userId: blocked, blocked: true, riskScore: 0 },
      { userId: risky, blocked: false, riskScore: 80 },
    ]);
    try {
      expect((await h.grabAs(c.campaignId, blocked)).outcome).toBe(Outcome.FORBIDDEN);
      expect((await h.grabAs(c.campaignId, risky)).outcome).toBe(Outcome.FORBIDDEN);
      expect((await h.grabAs(c.campaignId, `${h.run}-ok`)).outcome).toBe(Outcome.WON);
      const stats = await h.redis.hget(keys.stats(c.campaignId), 'o:forbidden');
      expect(stats).toBe('2');
    } finally {
      await h.setEligibility([
        { userId: blocked, blocked: false, riskScore: 0 },
        { userId: risky, blocked: false, riskScore: 0 },
      ]);
    }
    expect((await h.grabAs(c.campaignId, blocked)).outcome).toBe(Outcome.WON);
    expect((await h.grabAs(c.campaignId, risky)).outcome).toBe(Outcome.WON);
  });
});

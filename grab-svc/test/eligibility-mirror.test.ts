import { createLogger, createRedis, keys, writeEligibility, type RedisClient } from '@redpacket/lib';
import { pollUntil, requireRedis } from '@redpacket/lib/testing';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EligibilityMirror } from '../src/eligibility-mirror.js';

const log = createLogger('test', 'silent');
const run = `t${Math.random().toString(36).slice(2, 8)}`;
let redis: Redis;
let client: RedisClient;
const users: string[] = [];
const u = (name: string): string => {
  const id = `${run}-${name}`;
  users.push(id);
  return id;
};

beforeAll(async () => {
  redis = await requireRedis();
  client = createRedis({ url: `redis://${redis.options.host}:${redis.options.port}` });
});
afterAll(async () => {
  if (users.length) {
    await redis.srem(keys.blocked, ...users);
    await redis.hdel(keys.risk, ...users);
  }
  client?.disconnect();
  redis?.disconnect();
});

describe("grab-svc's in-memory copy of the blocklist and risk scores", () => {
  it('loads what Redis holds at start, then follows announced changes', async () => {
    const old = u('old');
    const risky = u('risky');
    await redis.sadd(keys.blocked, old);
    await redis.hset(keys.risk, risky, 70);
    const m = new EligibilityMirror(client, log);
    await m.start();
    try {
      expect(m.verdict(old)).toEqual({ blocked: true, riskScore: 0 });
      expect(m.verdict(risky)).toEqual({ blocked: false, riskScore: 70 });
      const fresh = u('fresh');
      const t0 = performance.now();
      await writeEligibility(client, [
        { userId: fresh, blocked: true, riskScore: 5 },
        { userId: old, blocked: false, riskScore: 0 },
      ]);
      await pollUntil('the change to arrive', () => m.verdict(fresh).blocked && !m.verdict(old).blocked, 1000, 1);
      expect(performance.now() - t0).toBeLessThan(1000);
      expect(m.verdict(fresh)).toEqual({ blocked: true, riskScore: 5 });
    } finally {
      m.stop();
    }
  });

  it('matches Redis after 600 concurrent changes racing several full resyncs', async () => {
    const m = new EligibilityMirror(client, log, { scanCount: 7 });
    await m.start();
    try {
      const ids = Array.from({ length: 60 }, (_, i) => u(`race${i}`));
      const ops: Promise<unknown>[] = [];
      for (let round = 0; round < 10; round++) {
        for (const [i, id] of ids.entries()) {
          ops.push(
            writeEligibility(client, [{ userId: id, blocked: (i + round) % 3 === 0, riskScore: (round * 7 + i) % 4 }]),
          );
        }
        ops.push(m.resync());
      }
      await Promise.all(ops);
      const expected = async (): Promise<string[]> => {
        const [member, scores] = await Promise.all([
          redis.smismember(keys.blocked, ...ids),
          redis.hmget(keys.risk, ...ids),
        ]);
        return ids.filter((id, i) => {
          const v = m.verdict(id);
          return v.blocked !== (member[i] === 1) || v.riskScore !== Number(scores[i] ?? 0);
        });
      };
      await pollUntil('the copy to equal Redis', async () => (await expected()).length === 0, 2000);
      expect(await expected()).toEqual([]);
      expect(m.resyncs).toBeGreaterThanOrEqual(2);
    } finally {
      m.stop();
    }
  });

  it('resyncs every resyncMs, which repairs a change whose message was lost', async () => {
    const m = new EligibilityMirror(client, log, { resyncMs: 50 });
    await m.start();
    try {
      const lost = u('lost');
      await redis.hset(keys.risk, lost, 33);
      await pollUntil('a periodic resync', () => m.verdict(lost).riskScore === 33, 5000);
      expect(m.resyncs).toBeGreaterThanOrEqual(2);
    } finally {
      m.stop();
    }
  });

  it('resyncs when the subscriber connection comes back (messages sent meanwhile are lost)', async () => {
    const name = `${run}-sub`;
    const m = new EligibilityMirror(client, log, { connectionName: name });
    await m.start();
    try {
      const missed = u('missed');
      // Written without an announcement: only a resync can see it.
      await redis.sadd(keys.blocked, missed);
      expect(m.verdict(missed).blocked).toBe(false);
      const list = (await redis.client('LIST')) as string;
      const id = /id=(\d+) .*name=(\S+)/.exec(list.split('\n').find((l) => l.includes(`name=${name} `)) ?? '')?.[1];
      expect(id).toBeDefined();
      await redis.client('KILL', 'ID', id!);
      await pollUntil('a resync after the reconnect', () => m.verdict(missed).blocked, 5000);
    } finally {
      m.stop();
    }
  });
});

import { createLogger, createRedis, keys } from '@redpacket/lib';
import { pollUntil } from '@redpacket/lib/testing';
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { keepMirrorInSync, resyncMirror } from '../src/eligibility-mirror.js';
import { accountApi, useHarness, user, type Harness } from './harness.js';

let h: Harness;
let api: ReturnType<typeof accountApi>;
useHarness({}, (x) => {
  h = x;
  api = accountApi(x.accounts);
});

/** Differences between what MySQL says and what the mirror holds, for the given users. */
async function mismatches(ids: string[]): Promise<string[]> {
  const [rows] = await h.pool.query('SELECT user_id, blocked, risk_score FROM users WHERE user_id IN (?)', [ids]);
  const out: string[] = [];
  for (const r of rows as { user_id: string; blocked: number; risk_score: number }[]) {
    const inSet = (await h.redis.sismember(keys.blocked, r.user_id)) === 1;
    const score = await h.redis.hget(keys.risk, r.user_id);
    if (inSet !== (r.blocked === 1)) out.push(`${r.user_id}: blocked ${r.blocked} but in set ${inSet}`);
    if (score !== (r.risk_score > 0 ? String(r.risk_score) : null))
      out.push(`${r.user_id}: risk ${r.risk_score} but mirror ${score}`);
  }
  return out;
}

describe('the Redis mirror of the blocklist and risk scores', () => {
  it('matches MySQL after 1,000 concurrent changes racing two resyncs', async () => {
    const ids = Array.from({ length: 20 }, (_, i) => `${h.prefix}race${i}`);
    for (const id of ids) await api.registerUser({ user: user(id) }, h.adminMd);
    // A fixed pseudo-random sequence of operations, so a failure can be replayed.
    let seed = 42;
    const rnd = (n: number): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    const ops: Promise<unknown>[] = [];
    for (let i = 0; i < 1000; i++) {
      const userId = ids[rnd(ids.length)]!;
      const kind = rnd(3);
      if (kind === 0) ops.push(api.blockUser({ userId, reason: `race ${i}` }, h.adminMd));
      else if (kind === 1) ops.push(api.unblockUser({ userId }, h.adminMd));
      else ops.push(api.setRiskScore({ userId, riskScore: rnd(3) * 40 }, h.adminMd));
      if (i === 300 || i === 700) ops.push(resyncMirror(h.pool, h.serverRedis, { userPrefix: h.prefix, chunk: 3 }));
    }
    await Promise.all(ops);
    expect(await mismatches(ids)).toEqual([]);
    const [events] = await h.pool.query('SELECT COUNT(*) AS n FROM user_block_events WHERE user_id LIKE ?', [
      `${h.prefix}race%`,
    ]);
    expect(Number((events as { n: number }[])[0]!.n)).toBeGreaterThan(500);
  });

  it('is rebuilt from MySQL when the Redis connection comes back', async () => {
    const blocked = `${h.prefix}back-blocked`;
    const risky = `${h.prefix}back-risky`;
    await api.registerUser({ user: user(blocked) }, h.adminMd);
    await api.registerUser({ user: user(risky, { riskScore: 33 }) }, h.adminMd);
    await api.blockUser({ userId: blocked, reason: 'reconnect test' }, h.adminMd);

    const conn = createRedis({
      url: `redis://${h.redis.options.host}:${h.redis.options.port}/${h.redis.options.db ?? 0}`,
    }) as Redis;
    const sync = await keepMirrorInSync(h.pool, conn, createLogger('test', 'silent'), {
      userPrefix: `${h.prefix}back-`,
    });
    try {
      expect(sync.first.flagged).toBe(2);
      // As after a Redis restart: the entries are gone and the connection drops (our own one).
      await h.redis.srem(keys.blocked, blocked);
      await h.redis.hdel(keys.risk, risky);
      const id = Number(await conn.client('ID'));
      await h.redis.client('KILL', 'ID', id);
      await pollUntil('the mirror to be rebuilt after the reconnect', async () => {
        return (await mismatches([blocked, risky])).length === 0;
      });
      expect(await h.redis.sismember(keys.blocked, blocked)).toBe(1);
      expect(await h.redis.hget(keys.risk, risky)).toBe('33');
    } finally {
      sync.stop();
      conn.disconnect();
    }
  });
});

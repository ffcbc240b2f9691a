/**
 * gateway on a real Redis Cluster (3 masters, 3 replicas) through ioredis Cluster: the buckets of
 * one decision share the domain's hash tag (one slot, so the script's keys are co-located), the
 * campaign flags are read from each campaign's own slot, and the limit survives the loss of the
 * master that holds the buckets.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createLogger, createRedis, keys, type RedisClient } from '@redpacket/lib';
import { pollUntil, startRedisCluster, type TestRedisCluster } from '@redpacket/lib/testing';
import type { Cluster } from 'ioredis';
import { Registry } from 'prom-client';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config.js';
import { Limiter } from '../src/limiter.js';
import { registerScripts } from '../src/scripts.js';
import { REASON_HEADER, type RateLimitResponse } from '../src/server.js';
import { descriptorsFor, grabHeaders } from './envoy-descriptors.js';
import { serveLimiter, shouldRateLimit } from './rls-client.js';

const shippedYaml = readFileSync(new URL('../config/ratelimit.yaml', import.meta.url), 'utf8');
const config = parseConfig(shippedYaml);
type Json = Record<string, unknown>;
const grabRule = (parse(shippedYaml) as { descriptors: Json[] }).descriptors.find((d) => d['value'] === 'grab');
const USER_LIMIT = Number(
  (((grabRule?.['descriptors'] as Json[])[0] as Json)['rate_limit'] as Json)['requests_per_unit'],
);

const log = createLogger('gateway-cluster-test', 'silent');

interface Replica {
  limiter: Limiter;
  redis: RedisClient;
  ask(campaign: string, user: string): Promise<RateLimitResponse>;
}

let cluster: TestRedisCluster;
let admin: Cluster;
const prefix = `rlc${randomBytes(4).toString('hex')}:`;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  cluster = await startRedisCluster();
  admin = createRedis({ url: '', clusterNodes: cluster.nodes }) as Cluster;
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  admin?.disconnect();
  await cluster?.stop();
});

/** A gateway replica as gateway/src/main.ts builds it, but on the cluster. */
async function startReplica(): Promise<Replica> {
  // As main.ts builds it (auto-pipelining, no offline queue), with rls.test.ts's timeout for a busy machine.
  const redis = createRedis({
    url: '',
    clusterNodes: cluster.nodes,
    autoPipelining: true,
    offlineQueue: false,
    commandTimeoutMs: 2000,
  });
  redis.on('error', () => undefined);
  registerScripts(redis);
  await pollUntil('the cluster client ready', () => redis.status === 'ready', 10_000);
  const limiter = new Limiter({
    redis,
    config,
    log,
    registry: new Registry(),
    keyPrefix: prefix,
    // The flag cache would hide the flags this file flips.
    flagCacheMs: 0,
  });
  const { server, client } = await serveLimiter(limiter, log);
  cleanups.push(async () => {
    client.close();
    await server.shutdown(1000);
    redis.disconnect();
  });
  const ask = (campaign: string, user: string): Promise<RateLimitResponse> =>
    shouldRateLimit(client, descriptorsFor('grab', { headers: grabHeaders(campaign, user) }));
  return { limiter, redis, ask };
}

/** The port of the master serving a key's slot. */
async function masterOf(key: string): Promise<number> {
  const slot = Number(await admin.cluster('KEYSLOT', key));
  for (const [from, to, master] of (await admin.cluster('SLOTS')) as unknown as [number, number, [string, number]][]) {
    if (slot >= from && slot <= to) return master[1];
  }
  throw new Error(`slot ${slot} not served`);
}

const errors = async (r: Replica): Promise<number> =>
  (await r.limiter.metrics.redisErrors.get()).values.reduce((a, v) => a + v.value, 0);

/** Each user's OK count after `perUser` concurrent calls spread over the replicas. */
async function flood(replicas: Replica[], campaign: string, users: string[], perUser: number): Promise<number[]> {
  const replies = await Promise.all(
    users.flatMap((user, u) =>
      Array.from({ length: perUser }, (_, k) =>
        replicas[(u + k) % replicas.length]!.ask(campaign, user).then((r) => (r.overall_code === 'OK' ? 1 : 0)),
      ),
    ),
  );
  return users.map((_, u) => replies.slice(u * perUser, (u + 1) * perUser).reduce<number>((a, b) => a + b, 0));
}

describe('gateway on a Redis Cluster', () => {
  let a: Replica;
  let b: Replica;
  beforeAll(async () => {
    a = await startReplica();
    b = await startReplica();
  });

  it('two replicas: each of 50 users, 40 calls at once, gets exactly its limit; buckets on one slot', async () => {
    const campaign = `gwc-${randomBytes(4).toString('hex')}`;
    const users = Array.from({ length: 50 }, (_, i) => `u${i}-${randomBytes(3).toString('hex')}`);
    expect(await flood([a, b], campaign, users, 40)).toEqual(users.map(() => USER_LIMIT));
    expect(await errors(a)).toBe(0);
    expect(await errors(b)).toBe(0);

    // Every bucket of the domain carries its hash tag: all on the master of that one slot.
    const home = await masterOf(`${prefix}{${config.domain}}:x`);
    for (const port of cluster.ports) {
      const role = (await cluster.node(port).role())[0];
      if (role !== 'master') continue;
      const [, found] = await cluster.node(port).scan('0', 'MATCH', `${prefix}*`, 'COUNT', 100_000);
      if (port === home) expect(found.length).toBeGreaterThanOrEqual(users.length);
      else expect(found).toEqual([]);
    }
  });

  it("reads each campaign's sold-out flag from the campaign's own slot, on whichever master it is", async () => {
    const byMaster = new Map<number, string>();
    for (let i = 0; i < 60 && byMaster.size < 3; i++) {
      const c = `gwc-${randomBytes(4).toString('hex')}`;
      byMaster.set(await masterOf(keys.state(c)), c);
    }
    expect(byMaster.size).toBe(3);
    for (const c of byMaster.values()) {
      expect((await a.ask(c, `u-${c}`)).overall_code).toBe('OK');
      await admin.set(keys.state(c), 'sold_out', 'PX', 60_000);
      const res = await b.ask(c, `v-${c}`);
      expect(res.overall_code).toBe('OVER_LIMIT');
      expect(res.response_headers_to_add.find((h) => h.key === REASON_HEADER)?.value).toBe('SOLD_OUT');
      await admin.del(keys.state(c));
    }
  });

  it('the master holding the buckets dies: decisions fail open meanwhile, then its replica enforces the limit', async () => {
    const home = await masterOf(`${prefix}{${config.domain}}:x`);
    // A replica whose first sync has not finished is not eligible for the failover: wait for all.
    await pollUntil(
      'every replica in sync',
      async () => {
        const infos = await Promise.all(cluster.ports.map((p) => cluster.node(p).info('replication')));
        const replicas = infos.filter((i) => i.includes('role:slave'));
        return replicas.length === 3 && replicas.every((i) => i.includes('master_link_status:up'));
      },
      20_000,
      100,
    );
    const pid = Number(/process_id:(\d+)/.exec(await cluster.node(home).info('server'))?.[1]);
    expect(pid).toBeGreaterThan(0);
    process.kill(pid, 'SIGKILL');
    // Until a replica is promoted (cluster-node-timeout 5 s), a decision cannot reach Redis: it
    // is allowed (fail-open) and counted.
    const before = await errors(a);
    expect((await a.ask('gwc-down', `u-down-${prefix}`)).overall_code).toBe('OK');
    expect(await errors(a)).toBeGreaterThan(before);

    await pollUntil(
      'a replica promoted in place of the dead master',
      async () => (await masterOf(`${prefix}{${config.domain}}:x`)) !== home,
      30_000,
      200,
    );
    // Both replicas find the new master by themselves (MOVED / slot refresh) and enforce again.
    const users = Array.from({ length: 20 }, (_, i) => `after${i}-${randomBytes(3).toString('hex')}`);
    await pollUntil(
      'decisions answered by Redis again',
      async () => {
        const e = [await errors(a), await errors(b)];
        await Promise.all([a.ask('gwc-probe', `p-${Date.now()}`), b.ask('gwc-probe', `q-${Date.now()}`)]);
        return (await errors(a)) === e[0] && (await errors(b)) === e[1];
      },
      30_000,
      200,
    );
    const errs = [await errors(a), await errors(b)];
    expect(await flood([a, b], `gwc-${randomBytes(4).toString('hex')}`, users, 30)).toEqual(
      users.map(() => USER_LIMIT),
    );
    expect([await errors(a), await errors(b)]).toEqual(errs);
  });
});

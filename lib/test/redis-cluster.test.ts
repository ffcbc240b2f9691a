import { existsSync } from 'node:fs';
import { pino } from 'pino';
import {
  createRedis,
  grabPausedFor,
  keys,
  listSwitches,
  setSwitch,
  Switches,
  UnknownSwitchError,
  type RedisClient,
} from '@redpacket/lib';
import { pollUntil, startRedisCluster, type TestRedisCluster } from '@redpacket/lib/testing';
import type { Cluster } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';

let cluster: TestRedisCluster;
let client: RedisClient;
beforeAll(async () => {
  cluster = await startRedisCluster();
  client = createRedis({ url: '', clusterNodes: cluster.nodes });
});
afterAll(async () => {
  client?.disconnect();
  await cluster?.stop();
});

it('starts 3 masters and 3 replicas, and a Cluster client spreads hash tags over the masters', async () => {
  expect(cluster.ports).toHaveLength(6);
  const roles = await Promise.all(cluster.ports.map(async (p) => (await cluster.node(p).role())[0]));
  expect(roles.filter((r) => r === 'master')).toHaveLength(3);
  expect(roles.filter((r) => r === 'slave')).toHaveLength(3);

  const c = client as Cluster;
  const tag = `t${Math.random().toString(36).slice(2, 8)}`;
  const masters = new Set<string>();
  for (let i = 0; i < 30; i++) {
    const key = `rp:{${tag}-${i}}:x`;
    await c.set(key, String(i));
    expect(await c.get(key)).toBe(String(i));
    const slot = await c.cluster('KEYSLOT', key);
    masters.add(String(slotOwner(await c.cluster('SLOTS'), Number(slot))));
  }
  expect(masters.size).toBe(3);
});

it('switches through ioredis Cluster: set, list, and read by a second process copy within 2 s', async () => {
  // The cluster is this file's own: the global switches may be set here.
  const reader = createRedis({ url: '', clusterNodes: cluster.nodes });
  const switches = new Switches(reader, pino({ level: 'silent' }), { refreshMs: 100 });
  const id = `c${Math.random().toString(36).slice(2, 10)}`;
  const campaign = grabPausedFor(id);
  try {
    await switches.start();
    expect(switches.isOn('gift.paused')).toBe(false);
    await setSwitch(client, 'gift.paused', true);
    await setSwitch(client, campaign, true);
    await pollUntil('the switches to read on', () => switches.isOn('gift.paused') && switches.grabPaused(id), 2000);
    const listed = await listSwitches(client);
    expect(listed.find((s) => s.name === 'gift.paused')?.on).toBe(true);
    expect(listed.find((s) => s.name === campaign)?.on).toBe(true);
    expect(listed.find((s) => s.name === 'grab.paused')?.on).toBe(false);
    // The hash lives on one master, the one serving its slot.
    const c = client as Cluster;
    const owner = slotOwner(await c.cluster('SLOTS'), Number(await c.cluster('KEYSLOT', keys.switches)));
    expect(await cluster.node(owner).hget(keys.switches, 'gift.paused')).toBe('on');

    await expect(setSwitch(client, 'gift.pasued', true)).rejects.toThrow(UnknownSwitchError);
    expect(Object.keys(await client.hgetall(keys.switches)).sort()).toEqual([campaign, 'gift.paused'].sort());
    await setSwitch(client, 'gift.paused', false);
    await pollUntil('gift.paused to read off', () => !switches.isOn('gift.paused'), 2000);
    expect(switches.grabPaused(id)).toBe(true);
  } finally {
    switches.stop();
    await client.del(keys.switches);
    reader.disconnect();
  }
});

it('stop() ends its processes and removes its temp dirs', async () => {
  const extra = await startRedisCluster();
  const pongs = await Promise.all(extra.ports.map((p) => extra.node(p).ping()));
  expect(pongs).toEqual(Array(6).fill('PONG'));
  const dirs = (await Promise.all(extra.ports.map((p) => extra.node(p).config('GET', 'dir')))).map(
    (r) => (r as string[])[1]!,
  );
  expect(dirs.every((d) => existsSync(d))).toBe(true);
  const pids = await Promise.all(
    extra.ports.map(async (p) => Number(/process_id:(\d+)/.exec(await extra.node(p).info('server'))![1])),
  );
  await extra.stop();
  expect(dirs.filter((d) => existsSync(d))).toEqual([]);
  expect(pids.filter(alive)).toEqual([]);
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The master port serving a slot, from CLUSTER SLOTS. */
function slotOwner(slots: unknown, slot: number): number {
  for (const [from, to, master] of slots as [number, number, [string, number]][]) {
    if (slot >= from && slot <= to) return master[1];
  }
  throw new Error(`slot ${slot} not served`);
}

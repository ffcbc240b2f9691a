/**
 * `npm run bench:failover`: how long gateway's bucket script cannot run after the Redis Cluster
 * master of its slot is SIGKILLed, until its replica is promoted and ioredis has found it (the
 * window in which gateway fails open). A test cluster of its own (3 masters, 3 replicas,
 * cluster-node-timeout 5 s) each round; BENCH_ROUNDS rounds (default 3), median. Figures, not a test.
 */
import { createRedis } from '@redpacket/lib';
import { pollUntil, startRedisCluster } from '@redpacket/lib/testing';
import { z } from 'zod';
import { registerScripts, takeTokens } from '@redpacket/gateway/scripts';

const env = z.object({ BENCH_ROUNDS: z.coerce.number().int().min(1).max(20).default(3) }).parse(process.env);
const KEY = 'rl:{redpacket}:failover-probe';

async function round(): Promise<{ ms: number; failed: number }> {
  const cluster = await startRedisCluster();
  // As gateway/src/main.ts builds it: no offline queue, a command timeout.
  const redis = createRedis({ url: '', clusterNodes: cluster.nodes, offlineQueue: false, commandTimeoutMs: 500 });
  redis.on('error', () => undefined);
  try {
    registerScripts(redis);
    await pollUntil('the cluster client', () => redis.status === 'ready', 10_000);
    const take = (): Promise<unknown> =>
      takeTokens(redis, [{ key: KEY, capacity: 1e9, periodMs: 1000, shadow: false }], 1);
    await take();
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
    const slot = Number(await redis.cluster('KEYSLOT', KEY));
    const slots = (await redis.cluster('SLOTS')) as unknown as [number, number, [string, number]][];
    const home = slots.find(([from, to]) => slot >= from && slot <= to)?.[2][1];
    if (home === undefined) throw new Error(`slot ${slot} not served`);
    const pid = Number(/process_id:(\d+)/.exec(await cluster.node(home).info('server'))?.[1]);
    const t0 = Date.now();
    process.kill(pid, 'SIGKILL');
    let failed = 0;
    for (;;) {
      try {
        await take();
        return { ms: Date.now() - t0, failed };
      } catch {
        failed++;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  } finally {
    redis.disconnect();
    await cluster.stop();
  }
}

const times: number[] = [];
for (let i = 0; i < env.BENCH_ROUNDS; i++) {
  const r = await round();
  times.push(r.ms);
  console.log(`round ${i + 1}: the bucket script answered again ${r.ms} ms after the kill (${r.failed} calls failed)`);
}
times.sort((a, b) => a - b);
console.log(`median: ${times[Math.floor(times.length / 2)]} ms (cluster-node-timeout 5000 ms)`);

import {
  exitCodeOf,
  listeningWorkerPids,
  startRedisCluster,
  testSigner,
  type TestRedisCluster,
} from '@redpacket/lib/testing';
import { spawnNode, type Child } from '@redpacket/loadgen';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startHarness, type Harness } from './harness.js';
import { raceProof } from './race.js';

/** Outside the ports test clusters claim (17400-17495). */
const PORT = 17496;
const mainScript = new URL('../dist/main.js', import.meta.url);

let cluster: TestRedisCluster;
let child: Child;
let h: Harness;
let workerPids: number[] = [];
beforeAll(async () => {
  cluster = await startRedisCluster();
  child = spawnNode(mainScript, [], {
    GRPC_PORT: String(PORT),
    WORKERS: '4',
    REDIS_CLUSTER_NODES: cluster.nodes,
    ...testSigner().env,
    LOG_LEVEL: 'info',
    // the race proof counts the outboxes: no relay draining them, no settle timer
    RELAY_ENABLED: '0',
    SETTLE_EVERY_MS: '0',
    // as in production: every WON on a replica before it is answered (the test cluster has no AOF)
    REDIS_DURABILITY: 'replicas',
    REDIS_WAIT_REPLICAS: '1',
    // a loaded 2-core host can take longer than the default 100 ms to replicate
    REDIS_WAIT_TIMEOUT_MS: '3000',
  });
  // The primary logs each worker once its server is bound.
  workerPids = await listeningWorkerPids(child, 4);
  h = await startHarness({ address: `127.0.0.1:${PORT}`, clusterNodes: cluster.nodes, connections: 8 });
});
afterAll(async () => {
  await h?.close();
  await child?.stop();
  await cluster?.stop();
});

it('WORKERS=4 on the Redis Cluster: four processes share the port, the race proof holds across them, a dead worker is replaced', async () => {
  const pids = new Set(workerPids);
  expect(pids.size).toBe(4);
  await raceProof(h);

  // A worker that dies is replaced.
  process.kill([...pids][0]!, 'SIGKILL');
  const replaced = await child.waitFor(/"worker":5,"pid":\d+.*worker listening/, 30_000);
  expect(pids.has((JSON.parse(replaced) as { pid: number }).pid)).toBe(false);

  const exit = exitCodeOf(child.proc);
  child.proc.kill('SIGTERM');
  expect(await exit).toBe(0);
});

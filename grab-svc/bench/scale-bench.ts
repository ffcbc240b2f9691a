/**
 * `npm run bench:scale`: one campaign's grabs/s on a local Redis Cluster (3 masters, 3 replicas,
 * started and stopped here) at S = 1, 2, 4 sub-pools (grab-svc WORKERS=1), and with grab-svc at
 * WORKERS=1 and WORKERS=2 (S = 1). Figures, not a test.
 * Env: BENCH_REQUESTS (per run), BENCH_CONCURRENCY, BENCH_ROUNDS; `--json` prints JSON too.
 */
import { randomBytes } from 'node:crypto';
import { credentials } from '@grpc/grpc-js';
import { bearer, startRedisCluster, testSigner } from '@redpacket/lib/testing';
import {
  grpcFrame,
  loadAverageLine,
  runLoad,
  spawnNode,
  type LoadReport,
  type PreparedRequest,
} from '@redpacket/loadgen';
import { AdminServiceClient, GrabRequest, Outcome } from '@redpacket/proto';
import Table from 'cli-table3';
import { GRAB_NODE_FLAGS } from '@redpacket/grab-svc/node-flags';
import { benchDurability, createBenchCampaign } from './bench-campaign.js';

const N = Number(process.env['BENCH_REQUESTS'] ?? 20_000);
const C = Number(process.env['BENCH_CONCURRENCY'] ?? 200);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 3);
/** In the project's port range, outside the block test clusters claim (17400-17495). */
const PORT = 17497;
const GRAB_PATH = '/redpacket.v1.GrabService/Grab';
const run = randomBytes(3).toString('hex');

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const fmt = (n: number, d = 0): string =>
  n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

interface Scenario {
  name: string;
  subPools: number;
}

interface Result {
  rps: number;
  p99: number;
}

/** Starts grab-svc with `workers` processes and measures each scenario on it in turn. */
async function measure(nodes: string, workers: number, scenarios: Scenario[], tokens: string[]): Promise<Result[]> {
  const grab = spawnNode(
    new URL('../main.js', import.meta.url),
    [],
    {
      GRPC_PORT: String(PORT),
      REDIS_CLUSTER_NODES: nodes,
      ...testSigner().env,
      WORKERS: String(workers),
      LOG_LEVEL: 'warn',
      // the cluster keeps no AOF
      REDIS_DURABILITY: benchDurability(process.env),
      // grabs only: no relay publishing the wins to the shared broker, no settle timer
      RELAY_ENABLED: '0',
      SETTLE_EVERY_MS: '0',
      // the V8 flags grab-svc's npm start runs with, as in bench:grab
    },
    GRAB_NODE_FLAGS,
  );
  const admin = new AdminServiceClient(`127.0.0.1:${PORT}`, credentials.createInsecure());
  try {
    const adminMd = bearer(await testSigner().sign({ userId: 'bench-ops', role: 'admin' }));
    const create = async (subPools: number): Promise<string> =>
      (await createBenchCampaign(admin, adminMd, { name: `scale bench ${run}`, packetCount: N, subPools })).id;
    // With LOG_LEVEL=warn there is no "listening" line: wait until the admin API answers.
    const deadline = Date.now() + 30_000;
    let first = '';
    while (!first) {
      first = await create(1).catch((err: unknown) => {
        if (Date.now() > deadline) throw err;
        return new Promise<string>((r) => setTimeout(() => r(''), 200));
      });
    }
    const load = (campaignId: string): Promise<LoadReport> =>
      runLoad({
        target: `http://127.0.0.1:${PORT}`,
        path: GRAB_PATH,
        requests: tokens.map((t, i): PreparedRequest => ({
          body: grpcFrame(GrabRequest.encode({ campaignId, requestId: `b${i}` }).finish()),
          headers: { authorization: `Bearer ${t}` },
        })),
        concurrency: C,
        connections: 4,
        replyKey: 1,
      });
    // Warm-up: JIT and the workers' verified-token caches.
    await load(first);
    const results: Result[] = [];
    for (const s of scenarios) {
      const runs: LoadReport[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        process.stderr.write(`${s.name}: round ${r + 1}/${ROUNDS}\n`);
        const rep = await load(await create(s.subPools));
        const won = rep.replies[String(Outcome.WON)] ?? 0;
        if (won !== N) {
          throw new Error(`expected ${N} WON, got ${JSON.stringify(rep.replies)} ${JSON.stringify(rep.errors)}`);
        }
        runs.push(rep);
      }
      results.push({ rps: median(runs.map((x) => x.rps)), p99: median(runs.map((x) => x.percentilesMs[99] ?? 0)) });
    }
    return results;
  } finally {
    admin.close();
    await grab.stop();
  }
}

async function main(): Promise<void> {
  const startLoad = loadAverageLine();
  process.stderr.write('starting a Redis Cluster (3 masters, 3 replicas)...\n');
  const cluster = await startRedisCluster();
  // Ctrl-C still stops the cluster's processes and removes their dirs.
  const onSignal = (): void => void cluster.stop().then(() => process.exit(130));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    process.stderr.write(`signing ${N} tokens...\n`);
    const tokens = await Promise.all(
      Array.from({ length: N }, (_, i) => testSigner().sign({ userId: `scale-${run}-u${i}` })),
    );
    const bySubPools: Scenario[] = [1, 2, 4].map((n) => ({ name: `cluster, S=${n}, WORKERS=1`, subPools: n }));
    const oneWorker = await measure(cluster.nodes, 1, bySubPools, tokens);
    const two: Scenario = { name: 'cluster, S=1, WORKERS=2', subPools: 1 };
    const [twoWorkers] = await measure(cluster.nodes, 2, [two], tokens);
    const rows: [string, Result][] = [
      ...bySubPools.map((s, i): [string, Result] => [s.name, oneWorker[i]!]),
      [two.name, twoWorkers!],
    ];
    const note = `median of ${ROUNDS}, ${N} users, ${C} in flight, every call WON`;
    const t = new Table({ head: ['scenario', 'grabs/s', 'p99 ms', 'note'] });
    for (const [name, r] of rows) t.push([name, fmt(r.rps), fmt(r.p99, 1), note]);
    const base = oneWorker[0]!.rps;
    t.push(['S=2 / S=1', fmt(oneWorker[1]!.rps / base, 2), '', 'same grab-svc process, same run']);
    t.push(['S=4 / S=1', fmt(oneWorker[2]!.rps / base, 2), '', 'same grab-svc process, same run']);
    t.push([
      'WORKERS=2 / WORKERS=1',
      fmt(twoWorkers!.rps / base, 2),
      '',
      'S=1; 2 cores shared with the load generator',
    ]);
    console.log(t.toString());
    console.log(`${startLoad} at the start, ${loadAverageLine()} at the end`);
    if (process.argv.includes('--json')) {
      console.log(JSON.stringify({ N, C, ROUNDS, results: Object.fromEntries(rows) }, null, 2));
    }
  } finally {
    await cluster.stop();
  }
}

await main();

/**
 * `npm run bench:tls`: what mTLS costs a grab. Two grab-svc processes in the same run, one
 * plaintext and one with GRPC_TLS_* (a PKI made here with openssl), each sent the same grabs
 * (every one a win: a fresh campaign a round, one call per user) by a grpc-js client in this
 * process, rounds alternating. Reported: the server process's CPU per grab (/proc, user + system)
 * and this client process's (process.cpuUsage), steady state: the connection and its handshake are
 * made before the timed calls, and the tokens are already in each server's cache. Figures, not a
 * test. Env: BENCH_REQUESTS (grabs a round, default 10 000), BENCH_CONCURRENCY (default 50),
 * BENCH_ROUNDS (default 3), REDIS_URL.
 */
import { type ChannelCredentials } from '@grpc/grpc-js';
import { channelCredentials, createRedis, keys, type TlsMaterial } from '@redpacket/lib';
import { bearer, call, deleteKeys, makeTestPki, testSigner } from '@redpacket/lib/testing';
import { cpuTimeMs, freePort, spawnNode, type Child } from '@redpacket/loadgen';
import { AdminServiceClient, GrabServiceClient, Outcome } from '@redpacket/proto';
import { GRAB_NODE_FLAGS } from '@redpacket/grab-svc/node-flags';
import { createBenchCampaign } from './bench-campaign.js';

const N = Number(process.env['BENCH_REQUESTS'] ?? 10_000);
const C = Number(process.env['BENCH_CONCURRENCY'] ?? 50);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 3);
const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379';

interface Target {
  name: 'plaintext' | 'mTLS';
  child: Child;
  admin: AdminServiceClient;
  grab: GrabServiceClient;
  serverUs: number[];
  clientUs: number[];
}

async function startTarget(
  name: Target['name'],
  tls: TlsMaterial | undefined,
  env: Record<string, string>,
): Promise<Target> {
  const port = await freePort();
  const child = spawnNode(
    new URL('../main.js', import.meta.url),
    [],
    {
      GRPC_PORT: String(port),
      REDIS_URL,
      REDIS_DURABILITY: 'none',
      ...testSigner().env,
      RELAY_ENABLED: '0',
      SETTLE_EVERY_MS: '0',
      LOG_LEVEL: 'info',
      ...env,
    },
    GRAB_NODE_FLAGS,
  );
  await child.waitFor(/gRPC server listening/);
  const creds: ChannelCredentials = channelCredentials(tls);
  const address = `127.0.0.1:${port}`;
  return {
    name,
    child,
    admin: new AdminServiceClient(address, creds),
    grab: new GrabServiceClient(address, creds),
    serverUs: [],
    clientUs: [],
  };
}

/** N grabs of a fresh campaign, C in flight; every one must win. */
async function round(t: Target, tokens: string[], adminToken: string, created: string[]): Promise<[number, number]> {
  const c = await createBenchCampaign(t.admin, bearer(adminToken), { name: `tls-bench ${t.name}`, packetCount: N });
  created.push(c.id);
  const mds = tokens.map(bearer);
  const pid = t.child.proc.pid!;
  const server0 = cpuTimeMs(pid);
  const client0 = process.cpuUsage();
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < N; i = next++) {
      const res = await call(t.grab.grab, t.grab, { campaignId: c.id, requestId: `r${i}` }, mds[i]!);
      if (res.outcome !== Outcome.WON) throw new Error(`grab ${i} on ${t.name}: ${Outcome[res.outcome]}`);
    }
  };
  await Promise.all(Array.from({ length: C }, worker));
  const client = process.cpuUsage(client0);
  return [((cpuTimeMs(pid) - server0) * 1000) / N, (client.user + client.system) / N];
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const pki = makeTestPki();
  const redis = createRedis({ url: REDIS_URL });
  const created: string[] = [];
  const targets = [await startTarget('plaintext', undefined, {}), await startTarget('mTLS', pki.meshTls, pki.env)];
  try {
    const adminToken = await testSigner().sign({ userId: 'tls-bench', role: 'admin' });
    const tokens = await Promise.all(
      Array.from({ length: N }, (_, i) => testSigner().sign({ userId: `tls-bench-${i}` })),
    );
    // untimed: the handshake, the JIT and every token into each server's verified-token cache
    for (const t of targets) await round(t, tokens, adminToken, created);
    for (let r = 0; r < ROUNDS; r++) {
      for (const t of r % 2 ? [...targets].reverse() : targets) {
        const [server, client] = await round(t, tokens, adminToken, created);
        t.serverUs.push(server);
        t.clientUs.push(client);
      }
    }
    const [plain, tls] = targets as [Target, Target];
    const line = (t: Target): string =>
      `${t.name.padEnd(9)} server ${median(t.serverUs).toFixed(1)} µs/grab (rounds ${t.serverUs.map((x) => x.toFixed(1)).join(', ')}), ` +
      `client ${median(t.clientUs).toFixed(1)} µs/grab`;
    process.stdout.write(`${N} grabs a round, ${C} in flight, ${ROUNDS} rounds, medians:\n`);
    process.stdout.write(`${line(plain)}\n${line(tls)}\n`);
    const ds = median(tls.serverUs) - median(plain.serverUs);
    const dc = median(tls.clientUs) - median(plain.clientUs);
    process.stdout.write(
      `mTLS costs ${ds.toFixed(1)} µs of server CPU per grab (${((ds / median(plain.serverUs)) * 100).toFixed(0)}%), ` +
        `${dc.toFixed(1)} µs of client CPU\n`,
    );
  } finally {
    for (const t of targets) {
      t.admin.close();
      t.grab.close();
      await t.child.stop();
    }
    for (const id of created) {
      await deleteKeys(redis as never, `rp:{${id}}:*`);
      await redis.zrem(keys.campaigns, id);
    }
    await redis.quit();
    pki.remove();
  }
}

await main();

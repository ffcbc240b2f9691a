/**
 * `npm run bench:gift`: gift-svc's consumer, unthrottled, against raw batched INSERTs of the same
 * rows into the awards table, in the same run; then the throttle's accuracy at two rates.
 * Figures, not a test: noisy on 2 shared cores. Env: MYSQL_URL, AMQP_URL, BENCH_WINS (20000),
 * GIFT_BATCH (500),
 * GIFT_WRITERS (4).
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { createLogger } from '@redpacket/lib';
import { createPool, DEFAULT_MYSQL_URL, migrate } from '@redpacket/db';
import {
  DEFAULT_AMQP_URL,
  assertTopology,
  connectAmqp,
  deleteTopology,
  encodeWin,
  topologyWithSuffix,
  type Topology,
  type WinEvent,
} from '@redpacket/wins';
import { z } from 'zod';
import { GiftConsumer } from '@redpacket/gift-svc/consumer';
import { accountId, EXTERNAL, transfer } from '@redpacket/ledger';

const env = z
  .object({
    MYSQL_URL: z.string().default(DEFAULT_MYSQL_URL),
    AMQP_URL: z.string().default(DEFAULT_AMQP_URL),
    BENCH_WINS: z.coerce.number().int().min(100).default(20_000),
    GIFT_BATCH: z.coerce.number().int().min(1).default(500),
    GIFT_WRITERS: z.coerce.number().int().min(1).default(4),
  })
  .parse(process.env);

const log = createLogger('gift-bench', 'warn');
const tag = randomBytes(4).toString('hex');
const campaigns: string[] = [];
const topologies: Topology[] = [];

function wins(n: number, label: string): WinEvent[] {
  const campaignId = `bench-${label}-${tag}`;
  campaigns.push(campaignId);
  const now = BigInt(Date.now());
  return Array.from({ length: n }, (_, i) => ({
    campaignId,
    packetId: `${label}${tag}${i}`,
    userId: `u${i}`,
    amountCents: BigInt(1 + (i % 500)),
    requestId: `r${i}`,
    wonAtMs: now,
    streamId: '',
    traceId: '',
  }));
}

/** Funds the campaign's escrow with the wins' sum (from external): awards are transfers out of it. */
async function fund(ws: WinEvent[]): Promise<void> {
  const w = ws[0];
  if (!w) return;
  await transfer(pool, {
    key: `bench-escrow:${w.campaignId}`,
    kind: 'deposit',
    from: EXTERNAL,
    to: accountId.escrow(w.campaignId),
    amountCents: ws.reduce((s, x) => s + x.amountCents, 0n),
  });
}

async function fill(ws: WinEvent[]): Promise<Topology> {
  await fund(ws);
  const t = topologyWithSuffix(`bench-${tag}-${topologies.length}`);
  topologies.push(t);
  const conn = await connectAmqp(env.AMQP_URL, `bench-fill-${tag}`);
  const ch = await conn.createConfirmChannel();
  await assertTopology(ch, t);
  for (let i = 0; i < ws.length; i += 1000) {
    for (const w of ws.slice(i, i + 1000)) ch.publish(t.exchange, w.campaignId, encodeWin(w), { persistent: true });
    await ch.waitForConfirms();
  }
  await conn.close();
  return t;
}

const pool = createPool(env.MYSQL_URL);

/**
 * Consumes a pre-filled queue with `instances` consumers sharing it (as gift-svc replicas do);
 * returns ms from start to the last credit, and the rate from the first credit on (no burst).
 */
async function consume(t: Topology, n: number, rate: number, instances = 1): Promise<{ ms: number; steady: number }> {
  const gifts = Array.from(
    { length: instances },
    (_, i) =>
      new GiftConsumer({
        pool,
        amqpUrl: env.AMQP_URL,
        topology: t,
        connectionName: `bench-gift-${tag}-${i}`,
        log,
        rate,
        batchSize: env.GIFT_BATCH,
        writers: env.GIFT_WRITERS,
      }),
  );
  const credited = (): number => gifts.reduce((sum, g) => sum + g.stats.credited, 0);
  const start = performance.now();
  let firstAt = 0;
  let firstCount = 0;
  await Promise.all(gifts.map((g) => g.start()));
  while (credited() < n) {
    if (firstAt === 0 && credited() > 0) {
      firstAt = performance.now();
      firstCount = credited();
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  const end = performance.now();
  await Promise.all(gifts.map((g) => g.stop()));
  return { ms: end - start, steady: ((n - firstCount) * 1000) / (end - firstAt) };
}

/** Baseline: the same rows, multi-row INSERTs of GIFT_BATCH in one transaction each, one connection. */
async function rawInsert(n: number, label: string): Promise<number> {
  const rawRows = wins(n, label);
  // Connecting is inside the timing on both sides: gift-svc's figure includes its own.
  const start = performance.now();
  const conn = await pool.getConnection();
  for (let i = 0; i < n; i += env.GIFT_BATCH) {
    const rows = rawRows
      .slice(i, i + env.GIFT_BATCH)
      .map((w) => [
        w.packetId,
        w.campaignId,
        w.userId,
        String(w.amountCents),
        w.requestId,
        new Date(Number(w.wonAtMs)),
      ]);
    await conn.beginTransaction();
    await conn.query(
      'INSERT INTO awards (packet_id, campaign_id, user_id, amount_cents, request_id, won_at) VALUES ?',
      [rows],
    );
    await conn.commit();
  }
  const ms = performance.now() - start;
  conn.release();
  return (n * 1000) / ms;
}

/** The local MariaDB/MySQL server's pid, if it runs on this machine and /proc shows it. */
function dbServerPid(): number | undefined {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (/^(mariadbd|mysqld)$/.test(readFileSync(`/proc/${d}/comm`, 'utf8').trim())) return Number(d);
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return undefined;
}
const dbPid = dbServerPid();

/** CPU ms (user + system) of a process so far, from /proc; 0 when it cannot be read. */
function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
}

/** Runs `f`; returns its result with the CPU µs per row of this process and of the database server. */
async function cpuPerRow<T>(rows: number, f: () => Promise<T>): Promise<{ value: T; ownUs: number; dbUs: number }> {
  const own = process.cpuUsage();
  const db0 = cpuMs(dbPid);
  const value = await f();
  const used = process.cpuUsage(own);
  return { value, ownUs: (used.user + used.system) / rows, dbUs: ((cpuMs(dbPid) - db0) * 1000) / rows };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

/** The machine's load, printed at the start and the end so a reader can judge the noise. */
const loadAverage = (): string =>
  `load average ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')} on ${availableParallelism()} cores`;

async function main(): Promise<void> {
  console.log(`start: ${loadAverage()}`);
  await migrate(env.MYSQL_URL);
  const n = env.BENCH_WINS;
  const raws: number[] = [];
  const gifts: number[] = [];
  const steadies: number[] = [];
  // Alternating rounds, medians reported: the machine is shared and noisy.
  const cpu = { rawOwn: [] as number[], rawDb: [] as number[], giftOwn: [] as number[], giftDb: [] as number[] };
  for (let round = 0; round < 3; round++) {
    const raw = await cpuPerRow(n, () => rawInsert(n, `raw${round}`));
    raws.push(raw.value);
    cpu.rawOwn.push(raw.ownUs);
    cpu.rawDb.push(raw.dbUs);
    const t = await fill(wins(n, `gift${round}`));
    const g = await cpuPerRow(n, () => consume(t, n, 0));
    gifts.push((n * 1000) / g.value.ms);
    steadies.push(g.value.steady);
    cpu.giftOwn.push(g.ownUs);
    cpu.giftDb.push(g.dbUs);
  }
  const fmt = (xs: number[]): string => xs.map((x) => Math.round(x)).join(', ');
  console.log(`wins: ${n} a round, batch: ${env.GIFT_BATCH}, 3 rounds (medians; every round in brackets)`);
  console.log(`raw batched INSERT into awards: ${Math.round(median(raws))} rows/s [${fmt(raws)}]`);
  console.log(
    `gift-svc unthrottled (connect, consume, decode, awards + transfers in one tx, ack): ` +
      `${Math.round(median(gifts))} awards/s [${fmt(gifts)}]; from the first credit on ${Math.round(median(steadies))}/s`,
  );
  console.log(`gift / raw: ${(median(gifts) / median(raws)).toFixed(2)} (goal >= 0.5)`);
  console.log(
    `CPU µs per row, node (this process) / database server (${dbPid ? `pid ${dbPid}, shared` : 'not on this machine'}): ` +
      `raw ${median(cpu.rawOwn).toFixed(1)} / ${median(cpu.rawDb).toFixed(1)}, ` +
      `gift-svc ${median(cpu.giftOwn).toFixed(1)} / ${median(cpu.giftDb).toFixed(1)}`,
  );

  // Throttle accuracy; the last line is seed 004's shape: two instances at 100/s share a queue.
  for (const [rate, count, instances] of [
    [100, 300, 1],
    [1000, 3000, 1],
    [100, 600, 2],
  ] as const) {
    const tt = await fill(wins(count, `rate${rate}x${instances}`));
    const r = await consume(tt, count, rate, instances);
    const target = rate * instances;
    console.log(
      `GIFT_RATE=${rate} x ${instances} instance(s): ${count} wins in ${Math.round(r.ms)} ms, steady ` +
        `${r.steady.toFixed(1)}/s (${((r.steady / target - 1) * 100).toFixed(1)}% off ${target}/s; goal within 5%)`,
    );
  }
  console.log(`end: ${loadAverage()}`);
}

/** Removes every row and queue this run made; also on Ctrl-C and when stdout goes away. */
async function cleanup(): Promise<void> {
  for (const c of campaigns) {
    await pool.query('DELETE FROM awards WHERE campaign_id = ?', [c]);
    await pool.query('DELETE FROM ledger WHERE campaign_id = ?', [c]);
  }
  const conn = await connectAmqp(env.AMQP_URL, `bench-cleanup-${tag}`);
  for (const t of topologies) {
    // One channel per topology: a failed delete closes its channel.
    const ch = await conn.createChannel();
    ch.on('error', () => undefined);
    await deleteTopology(ch, t).catch(() => undefined);
  }
  await conn.close();
  await pool.end();
}

process.stdout.on('error', () => undefined);
process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));
try {
  await main();
} finally {
  await cleanup();
}

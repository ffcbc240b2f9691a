/** The demo's report: one JSON document with --json, else the tables the README shows. */
import pc from 'picocolors';
import { percentile } from '@redpacket/loadgen';
import type { CampaignStats, DeliveryStats, Reconciliation, Settlement } from '@redpacket/proto';
import { keyValueTable, num, plain, table, yuan } from '../format.js';
import { reconciliationRows, settlementRows } from '../commands/campaign.js';
import { SERVICE_NAMES, type RunningService } from './services.js';
import { wonCents, type Check } from './checks.js';
import type { CrowdResult, WaveResult } from './crowd.js';
import { trailJson, trailLine, type MoneyTrail } from './money-trail.js';

/** The campaign's sizes as the demo was asked for them. */
export interface DemoSizes {
  packets: number;
  users: number;
  batches: number;
  interval: number;
}

/** Everything the report shows. */
export interface ReportInput {
  o: DemoSizes;
  run: string;
  campaignId: string;
  totalCents: bigint;
  services: RunningService[];
  /** grab-svc's durability policy and the Redis it ran on. */
  durability: string;
  migrations: number;
  imported: unknown;
  signMs: number;
  crowd: CrowdResult;
  stats: CampaignStats;
  delivery: DeliveryStats | undefined;
  deliverySeconds: number | undefined;
  settlement: Settlement | undefined;
  reconciliation: Reconciliation | undefined;
  /** Where the money went (account-svc only): deposit, escrow, awards, refund, withdrawals, audit. */
  trail: MoneyTrail | undefined;
  checks: Check[];
  seconds: number;
  /** When the first batch opened: wave times are shown from there. */
  startMs: number;
}

/** The figures of the crowd both forms show. */
interface Figures {
  lat: Record<string, number>;
  busySeconds: number;
  grabsPerSecond: number;
  peak: number;
  absent: string[];
}

function figures(r: ReportInput): Figures {
  const { crowd } = r;
  const lat = Object.fromEntries(
    [50, 90, 99, 99.9].map((p) => [`p${p}`, Number(percentile(crowd.latenciesMs, p).toFixed(2))]),
  );
  // calls over the time calls were in flight: the idle waits for the next batch do not count
  const busySeconds = crowd.waves.reduce((t, w) => t + w.ms, 0) / 1000;
  return {
    lat,
    busySeconds,
    grabsPerSecond: Math.round(crowd.calls / Math.max(busySeconds, 0.001)),
    peak: Math.max(...crowd.waves.map((w) => w.grabsPerSecond)),
    absent: SERVICE_NAMES.filter((n) => !r.services.some((s) => s.name === n)),
  };
}

function reportJson(r: ReportInput, f: Figures) {
  const { crowd, stats: s } = r;
  return {
    ok: r.checks.every((c) => c.ok),
    campaignId: r.campaignId,
    sizes: {
      packets: r.o.packets,
      totalCents: r.totalCents.toString(),
      users: r.o.users,
      batches: r.o.batches,
      intervalMs: r.o.interval,
    },
    services: r.services.map((x) => ({ name: x.name, port: x.port, pid: x.pid })),
    durability: r.durability,
    notStarted: f.absent,
    migrationsApplied: r.migrations,
    imported: r.imported,
    tokenSigningMs: r.signMs,
    calls: crowd.calls,
    outcomes: crowd.outcomes,
    errors: crowd.errors,
    grabsPerSecond: f.grabsPerSecond,
    peakGrabsPerSecond: f.peak,
    pressingSeconds: Number(f.busySeconds.toFixed(2)),
    grabWindowSeconds: Number(crowd.grabSeconds.toFixed(2)),
    latencyMs: f.lat,
    waves: crowd.waves.map(({ startedAtMs, ...w }) => ({ ...w, startedAt: new Date(startedAtMs).toISOString() })),
    stats: plain(s),
    money: {
      totalCents: r.totalCents.toString(),
      claimedCents: s.amountClaimedCents.toString(),
      remainingCents: s.amountRemainingCents.toString(),
      winners: crowd.wins.size,
      wonAnswersCents: wonCents(crowd).toString(),
    },
    delivery: r.delivery ? { ...(plain(r.delivery) as object), seconds: r.deliverySeconds } : null,
    settlement: r.settlement ? plain(r.settlement) : null,
    reconciliation: r.reconciliation ? plain(r.reconciliation) : null,
    moneyTrail: r.trail ? trailJson(r.trail) : null,
    checks: r.checks,
    seconds: Number(r.seconds.toFixed(1)),
  };
}

function summaryRows(r: ReportInput, f: Figures): [string, string][] {
  const { crowd, stats: s, o } = r;
  const { lat } = f;
  return [
    ['campaign', `${yuan(r.totalCents)} in ${num(o.packets)} packets, ${o.batches} batches ${o.interval} ms apart`],
    [
      'crowd',
      `${num(o.users)} users (tokens signed in ${(r.signMs / 1000).toFixed(1)} s), ${num(crowd.calls)} grab calls: ` +
        'early birds, losers and winners pressing again',
    ],
    ['services started', r.services.map((x) => `${x.name} :${x.port}`).join(', ')],
    ['not in this build', f.absent.length ? f.absent.join(', ') : '-'],
    ['durability', r.durability],
    [
      'grabs/s',
      `${num(f.grabsPerSecond)} while the crowd pressed (${f.busySeconds.toFixed(1)} s), ${num(f.peak)} in the busiest wave`,
    ],
    ['latency', `p50 ${lat['p50']} ms, p90 ${lat['p90']} ms, p99 ${lat['p99']} ms, p99.9 ${lat['p99.9']} ms`],
    ['claimed', `${num(s.packetsClaimed)} of ${num(s.packetsTotal)} packets, ${yuan(s.amountClaimedCents)}`],
    [
      'delivery',
      r.delivery
        ? `${num(r.delivery.delivered)} delivered in ${r.deliverySeconds?.toFixed(1)} s after the first release, ${num(r.delivery.deadLettered)} dead letters`
        : 'n/a (gift-svc not in this build: no delivery, settle or reconcile)',
    ],
  ];
}

/** "WON 12, SOLD_OUT 3": a wave's outcomes in one cell (the demo's progress lines too). */
export const outcomeList = (outcomes: Record<string, number>): string =>
  Object.entries(outcomes)
    .map(([k, v]) => `${k} ${num(v)}`)
    .join(', ');

function waveTable(waves: WaveResult[], startMs: number): string {
  return table(
    ['wave', 'from', 'calls', 'grabs/s', 'p50 ms', 'p99 ms', 'outcomes'],
    waves.map((w) => [
      w.name,
      `${((w.startedAtMs - startMs) / 1000).toFixed(1)} s`,
      num(w.calls),
      num(w.grabsPerSecond),
      w.p50Ms.toFixed(1),
      w.p99Ms.toFixed(1),
      outcomeList(w.outcomes) + (w.errors ? `, errors ${num(w.errors)}` : ''),
    ]),
  );
}

function outcomeTable(crowd: CrowdResult): string {
  const rows = ['WON', 'ALREADY_GRABBED', 'SOLD_OUT', 'NOT_STARTED', 'ENDED', 'FORBIDDEN'].map((k) => [
    k,
    num(crowd.outcomes[k] ?? 0),
  ]);
  const errorCount = Object.values(crowd.errors).reduce((a, b) => a + b, 0);
  if (errorCount) rows.push(['gRPC errors', num(errorCount)]);
  return table(['outcome', 'answers'], rows);
}

function reportHuman(r: ReportInput, f: Figures, ok: boolean): string {
  const s = r.stats;
  const lines = [
    pc.bold(`Red packet demo — campaign ${r.campaignId}`),
    keyValueTable(summaryRows(r, f)),
    waveTable(r.crowd.waves, r.startMs),
    outcomeTable(r.crowd),
  ];
  if (r.settlement) lines.push(keyValueTable(settlementRows(r.settlement)));
  if (r.reconciliation) lines.push(keyValueTable(reconciliationRows(r.reconciliation)));
  lines.push(
    table(
      ['money check', 'result', ''],
      r.checks.map((c) => [c.what, c.ok ? pc.green('OK') : pc.red('FAILED'), c.detail]),
    ),
    `money: claimed ${yuan(s.amountClaimedCents)} + remaining ${yuan(s.amountRemainingCents)} = ${yuan(s.amountClaimedCents + s.amountRemainingCents)}, total ${yuan(r.totalCents)}: ${ok ? 'OK to the cent' : 'MISMATCH'}`,
    `finished in ${r.seconds.toFixed(1)} s; campaign closed, ${r.services.length} service(s) stopped`,
  );
  if (r.trail) lines.push(`money trail: ${trailLine(r.trail)}`);
  return lines.join('\n');
}

/** The report in both forms. */
export function buildReport(r: ReportInput): { json: unknown; human: string } {
  const f = figures(r);
  const json = reportJson(r, f);
  return { json, human: reportHuman(r, f, json.ok) };
}

/** ghz's JSON report, from a @redpacket/loadgen LoadReport (durations in nanoseconds, as ghz). */
import { percentile, type LoadReport } from '@redpacket/loadgen';

/** Go's codes.Code names, which ghz uses as statusCodeDistribution keys. */
const GO_CODES = [
  'OK',
  'Canceled',
  'Unknown',
  'InvalidArgument',
  'DeadlineExceeded',
  'NotFound',
  'AlreadyExists',
  'PermissionDenied',
  'ResourceExhausted',
  'FailedPrecondition',
  'Aborted',
  'OutOfRange',
  'Unimplemented',
  'Internal',
  'Unavailable',
  'DataLoss',
  'Unauthenticated',
];

/** ghz's latency percentiles. */
export const GHZ_PERCENTILES = [10, 25, 50, 75, 90, 95, 99];

export interface GhzReport {
  date: string;
  endReason: 'normal' | 'timeout';
  options: Record<string, unknown>;
  count: number;
  total: number;
  average: number;
  fastest: number;
  slowest: number;
  rps: number;
  errorDistribution: Record<string, number>;
  statusCodeDistribution: Record<string, number>;
  latencyDistribution: { percentage: number; latency: number }[];
  histogram: { mark: number; count: number; frequency: number }[];
  /** Not in ghz: the same load against loadgen's echo server (--baseline). */
  baseline?: {
    rps: number;
    targetOverEcho: number;
    echoLatencyDistribution: { percentage: number; latency: number }[];
    /** The same echo server driven by h2load (a native client), when h2load is installed. */
    h2loadRps?: number;
    h2loadError?: string;
  };
}

const ns = (ms: number): number => Math.round(ms * 1e6);

/** The name ghz would print for loadgen's status key ("0", "14", "transport", "unknown"). */
export function codeName(key: string): string {
  if (key === 'transport') return 'Unavailable';
  return GO_CODES[Number(key)] ?? 'Unknown';
}

export function latencyDistribution(sorted: Float64Array): { percentage: number; latency: number }[] {
  return GHZ_PERCENTILES.map((p) => ({ percentage: p, latency: ns(percentile(sorted, p)) }));
}

/** ghz's histogram: 11 marks from fastest to slowest (seconds), each counting latencies up to it. */
export function histogram(sorted: Float64Array): { mark: number; count: number; frequency: number }[] {
  if (sorted.length === 0) return [];
  const fastest = sorted[0]! / 1000;
  const slowest = sorted[sorted.length - 1]! / 1000;
  const bc = 10;
  const step = (slowest - fastest) / bc;
  const marks = Array.from({ length: bc + 1 }, (_, i) => (i === bc ? slowest : fastest + step * i));
  const counts = new Array<number>(bc + 1).fill(0);
  let bi = 0;
  for (let i = 0; i < sorted.length;) {
    if (sorted[i]! / 1000 <= marks[bi]! || bi === bc) {
      counts[bi]!++;
      i++;
    } else bi++;
  }
  return marks.map((mark, i) => ({ mark, count: counts[i]!, frequency: counts[i]! / sorted.length }));
}

export function toGhzReport(r: LoadReport, options: Record<string, unknown>, timedOut: boolean): GhzReport {
  const statusCodeDistribution: Record<string, number> = {};
  for (const [k, v] of Object.entries(r.statusCounts)) {
    const name = codeName(k);
    statusCodeDistribution[name] = (statusCodeDistribution[name] ?? 0) + v;
  }
  const errorDistribution: Record<string, number> = {};
  for (const [k, v] of Object.entries(r.errors)) {
    const i = k.indexOf(': ');
    const desc = `rpc error: code = ${codeName(k.slice(0, i))} desc = ${k.slice(i + 2)}`;
    errorDistribution[desc] = (errorDistribution[desc] ?? 0) + v;
  }
  return {
    date: new Date().toISOString(),
    endReason: timedOut ? 'timeout' : 'normal',
    options,
    count: r.count,
    total: ns(r.totalMs),
    average: ns(r.averageMs),
    fastest: ns(r.fastestMs),
    slowest: ns(r.slowestMs),
    rps: r.rps,
    errorDistribution,
    statusCodeDistribution,
    latencyDistribution: latencyDistribution(r.latenciesMs),
    histogram: histogram(r.latenciesMs),
  };
}

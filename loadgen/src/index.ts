/**
 * A gRPC load generator for unary calls. Requests are encoded once up front and written as raw
 * HTTP/2 streams from worker threads, so a call costs the generator far less than a grpc-js
 * client call would (which saturates near 5-7k calls/s on one core and would measure itself).
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { PreparedRequest, WorkerInput, WorkerResult } from './types.js';

export { grpcFrame, firstMessage } from './frame.js';
export { ECHO_PATH } from './echo-path.js';
export type { PreparedRequest } from './types.js';

export interface LoadOptions {
  /** e.g. "http://127.0.0.1:50051" */
  target: string;
  /** e.g. "/redpacket.v1.GrabService/Grab" */
  path: string;
  /** Sent in order; each is sent once when durationMs is 0, round-robin otherwise. */
  requests: PreparedRequest[];
  /** Headers on every request. */
  metadata?: Record<string, string>;
  /** Streams in flight in total. */
  concurrency: number;
  /** HTTP/2 connections in total (at least one per worker). */
  connections?: number;
  workers?: number;
  /** Run for this long instead of sending each request once. */
  durationMs?: number;
  /**
   * Total request rate; 0 means as fast as possible (closed loop). Above 0 the run is open
   * loop: each request has a fixed send time and its latency counts from that time, so keep
   * `concurrency` well above rate x latency or the cap itself shows up as queueing delay.
   */
  rps?: number;
  /** Count replies by the value of this varint field number (e.g. 1 = the grab outcome). */
  replyKey?: number;
  /** Keep each request's last reply message (LoadReport.replyMessages), e.g. to read every answer. */
  keepReplies?: boolean;
}

export interface LoadReport {
  count: number;
  totalMs: number;
  rps: number;
  averageMs: number;
  fastestMs: number;
  slowestMs: number;
  /** Percentile -> latency in ms. */
  percentilesMs: Record<number, number>;
  statusCounts: Record<string, number>;
  errors: Record<string, number>;
  replies: Record<string, number>;
  /** Every latency in ms, sorted ascending (for histograms and merged percentiles). */
  latenciesMs: Float64Array;
  /**
   * keepReplies only: the reply message of each request, in the order of `requests`
   * (the last one when requests were cycled); undefined where the call failed.
   */
  replyMessages?: (Uint8Array | undefined)[];
}

export const PERCENTILES = [10, 25, 50, 75, 90, 95, 99, 99.9];

/** Nearest-rank percentile of latencies sorted ascending; 0 when there are none. */
export function percentile(sorted: Float64Array, p: number): number {
  return sorted.length
    ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
    : 0;
}

export async function runLoad(opts: LoadOptions): Promise<LoadReport> {
  const workers = Math.max(1, Math.min(opts.workers ?? Math.min(2, availableParallelism()), opts.concurrency));
  const connections = Math.max(workers, opts.connections ?? workers);
  const slices: PreparedRequest[][] = Array.from({ length: workers }, () => []);
  opts.requests.forEach((r, i) => slices[i % workers]!.push(r));
  const t0 = performance.now();
  const results = await Promise.all(
    slices.map((requests, w) => {
      const input: WorkerInput = {
        target: opts.target,
        path: opts.path,
        requests,
        metadata: opts.metadata ?? {},
        concurrency: Math.ceil(opts.concurrency / workers),
        connections: Math.ceil(connections / workers),
        durationMs: opts.durationMs ?? 0,
        rps: (opts.rps ?? 0) / workers,
        replyKey: opts.replyKey ?? 0,
        keepReplies: opts.keepReplies ?? false,
      };
      return new Promise<WorkerResult>((resolve, reject) => {
        const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: input });
        worker.once('message', (r: WorkerResult) => {
          resolve(r);
          void worker.terminate();
        });
        worker.once('error', reject);
        worker.once('exit', (code) => code !== 0 && code !== 1 && reject(new Error(`load worker ${w} exited ${code}`)));
      });
    }),
  );
  const totalMs = performance.now() - t0;
  const report = summarize(results, totalMs);
  if (opts.keepReplies) {
    // request i went to worker i % workers, at position floor(i / workers) of its slice
    report.replyMessages = opts.requests.map((_, i) => results[i % workers]?.messages?.[Math.floor(i / workers)]);
  }
  return report;
}

function merge(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

function summarize(results: WorkerResult[], totalMs: number): LoadReport {
  const count = results.reduce((n, r) => n + r.latenciesMs.length, 0);
  const all = new Float64Array(count);
  let o = 0;
  for (const r of results) {
    all.set(r.latenciesMs, o);
    o += r.latenciesMs.length;
  }
  all.sort();
  const statusCounts: Record<string, number> = {};
  const errors: Record<string, number> = {};
  const replies: Record<string, number> = {};
  for (const r of results) {
    merge(statusCounts, r.statusCounts);
    merge(errors, r.errors);
    merge(replies, r.replies);
  }
  const elapsed = Math.max(...results.map((r) => r.elapsedMs), 1);
  return {
    count,
    totalMs,
    rps: (count / elapsed) * 1000,
    averageMs: count ? all.reduce((a, b) => a + b, 0) / count : 0,
    fastestMs: count ? all[0]! : 0,
    slowestMs: count ? all[count - 1]! : 0,
    percentilesMs: Object.fromEntries(PERCENTILES.map((p) => [p, percentile(all, p)])),
    statusCounts,
    errors,
    replies,
    latenciesMs: all,
  };
}

/** Path of the echo server's script, to spawn as a child process. */
export const echoServerScript = new URL('./echo-server.js', import.meta.url);
export { cpuTimeMs, freePort, h2load, loadAverageLine, spawnNode, type Child, type H2loadResult } from './procs.js';
export { areaOf, summarizeCpuProfile, type ProfileItem, type ProfileSummary } from './cpu-profile.js';

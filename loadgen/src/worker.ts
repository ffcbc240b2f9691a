/** One load worker thread: keeps `concurrency` streams in flight over its own HTTP/2 sessions. */
import { connect, constants, type ClientHttp2Session } from 'node:http2';
import { parentPort, workerData } from 'node:worker_threads';
import { firstMessage } from './frame.js';
import type { WorkerInput, WorkerResult } from './types.js';

const input = workerData as WorkerInput;
const { HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH, HTTP2_HEADER_CONTENT_TYPE, HTTP2_HEADER_TE } = constants;

const sessions: ClientHttp2Session[] = [];
for (let i = 0; i < input.connections; i++) {
  const s = connect(input.target, { settings: { initialWindowSize: 1 << 20 } });
  s.on('error', () => undefined);
  sessions.push(s);
}

const latencies = new Float64Array(input.requests.length || 1 << 20);
let recorded = 0;
const statusCounts: Record<string, number> = {};
const errors: Record<string, number> = {};
const replies: Record<string, number> = {};
const messages: (Uint8Array | undefined)[] | undefined = input.keepReplies
  ? new Array<Uint8Array | undefined>(input.requests.length)
  : undefined;
let next = 0;
let done = 0;
const startedAt = performance.now();
const deadline = input.durationMs > 0 ? startedAt + input.durationMs : Infinity;
const total = input.durationMs > 0 ? Infinity : input.requests.length;
// Open-loop pacing when a rate is set: request k is due at start + k / rps, whatever came back.
const interval = input.rps > 0 ? 1000 / input.rps : 0;

function finish(): void {
  const result: WorkerResult = {
    latenciesMs: latencies.slice(0, recorded),
    statusCounts,
    errors,
    replies,
    elapsedMs: performance.now() - startedAt,
    messages,
  };
  for (const s of sessions) s.close();
  parentPort?.postMessage(result, [result.latenciesMs.buffer as ArrayBuffer]);
}

function record(ms: number): void {
  if (recorded === latencies.length) return;
  latencies[recorded++] = ms;
}

/**
 * Sends request k. `dueAt` is its scheduled send time in open-loop runs: latency counts from
 * there, not from when a free stream slot let it go, so a stalled server is charged for every
 * request it delayed (no coordinated omission).
 */
function issue(k: number, dueAt: number): void {
  const req = input.requests[k % input.requests.length]!;
  const session = sessions[k % sessions.length]!;
  const t0 = interval > 0 ? dueAt : performance.now();
  const headers: Record<string, string> = {
    [HTTP2_HEADER_METHOD]: 'POST',
    [HTTP2_HEADER_PATH]: input.path,
    [HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
    [HTTP2_HEADER_TE]: 'trailers',
    ...input.metadata,
    ...req.headers,
  };
  const stream = session.request(headers);
  const chunks: Buffer[] = [];
  let grpcStatus = '';
  let grpcMessage = '';
  stream.on('response', (h) => {
    // trailers-only responses carry the status (and its message) in the headers
    if (h['grpc-status'] !== undefined) grpcStatus = String(h['grpc-status']);
    if (h['grpc-message'] !== undefined) grpcMessage = String(h['grpc-message']);
  });
  stream.on('trailers', (t) => {
    grpcStatus = String(t['grpc-status'] ?? grpcStatus);
    grpcMessage = String(t['grpc-message'] ?? grpcMessage);
  });
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.on('error', (e: Error) => {
    grpcStatus = 'transport';
    grpcMessage = e.message;
  });
  stream.on('close', () => {
    record(performance.now() - t0);
    const code = grpcStatus || 'unknown';
    statusCounts[code] = (statusCounts[code] ?? 0) + 1;
    if (code !== '0') {
      const key = `${code}: ${decodeURIComponent(grpcMessage)}`;
      errors[key] = (errors[key] ?? 0) + 1;
    } else if (input.replyKey > 0 || messages) {
      const body = Buffer.concat(chunks);
      if (input.replyKey > 0) {
        // bucket replies by the value of one varint field (e.g. the grab outcome)
        const v = body.length > 6 && body[5] === input.replyKey << 3 ? String(body[6]) : 'default';
        replies[v] = (replies[v] ?? 0) + 1;
      }
      if (messages) {
        // a copy: the body may be a view into a shared pool that postMessage would clone whole
        const m = firstMessage(body);
        messages[k % messages.length] = m && new Uint8Array(m);
      }
    }
    done++;
    schedule();
  });
  stream.end(req.body);
}

/** Claims the next request for a free slot and sends it now, or at its due time when paced. */
function schedule(): void {
  const due = interval > 0 ? startedAt + next * interval : 0;
  if (next >= total || (interval > 0 ? due : performance.now()) >= deadline) {
    if (done === next) finish();
    return;
  }
  // claimed here, not when the timer fires, so two waiting slots never take the same due time
  const k = next++;
  const wait = due - performance.now();
  if (wait > 1) setTimeout(issue, wait, k, due);
  else issue(k, due);
}

for (let i = 0; i < input.concurrency; i++) schedule();

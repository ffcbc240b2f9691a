import { createServer, type Http2Server } from 'node:http2';
import { afterEach, describe, expect, it } from 'vitest';
import { grpcFrame, runLoad } from '@redpacket/loadgen';

/** A gRPC-shaped HTTP/2 server answering every stream with an empty message after `delayMs(n)`. */
function stallingServer(delayMs: (n: number) => number): Promise<{ server: Http2Server; port: number }> {
  let n = 0;
  const server = createServer();
  server.on('stream', (stream) => {
    const wait = delayMs(n++);
    stream.on('data', () => undefined);
    stream.on('end', () => {
      setTimeout(() => {
        if (stream.destroyed) return;
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(grpcFrame(new Uint8Array(0)));
      }, wait);
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address();
      resolve({ server, port: typeof addr === 'object' && addr ? addr.port : 0 });
    }),
  );
}

describe('runLoad with a target rate (open loop)', () => {
  let server: Http2Server | undefined;
  afterEach(async () => {
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    server = undefined;
  });

  const requests = Array.from({ length: 40 }, () => ({ body: grpcFrame(new Uint8Array(0)) }));

  it('keeps the schedule: 40 requests at 100/s take about 0.4 s, not as fast as possible', async () => {
    const s = await stallingServer(() => 0);
    server = s.server;
    const r = await runLoad({
      target: `http://127.0.0.1:${s.port}`,
      path: '/t/T',
      requests,
      concurrency: 8,
      workers: 1,
      rps: 100,
    });
    expect(r.statusCounts).toEqual({ '0': 40 });
    // the last request is due at 390 ms; a closed-loop run of 40 empty calls takes a few ms
    expect(r.totalMs).toBeGreaterThanOrEqual(380);
    expect(r.totalMs).toBeLessThan(2000);
  });

  it('charges a stall to every request it delayed (latency from the scheduled send time)', async () => {
    // the first call takes 300 ms; with one stream slot the next 29 requests wait behind it
    const s = await stallingServer((n) => (n === 0 ? 300 : 0));
    server = s.server;
    const r = await runLoad({
      target: `http://127.0.0.1:${s.port}`,
      path: '/t/T',
      requests,
      concurrency: 1,
      workers: 1,
      rps: 100,
    });
    expect(r.count).toBe(40);
    // request k (k < 30) was due at 10k ms but could only go at ~300 ms: its latency is ~300 - 10k.
    // Measured from the actual send, the median would be ~1 ms (coordinated omission).
    expect(r.percentilesMs[50]).toBeGreaterThan(80);
    expect(r.slowestMs).toBeGreaterThanOrEqual(295);
  });

  it('closed loop (no rate) measures from the send: the same stall shows in one call only', async () => {
    const s = await stallingServer((n) => (n === 0 ? 300 : 0));
    server = s.server;
    const r = await runLoad({
      target: `http://127.0.0.1:${s.port}`,
      path: '/t/T',
      requests,
      concurrency: 1,
      workers: 1,
    });
    expect(r.count).toBe(40);
    expect(r.slowestMs).toBeGreaterThanOrEqual(295);
    expect(r.percentilesMs[50]).toBeLessThan(80);
  });
});

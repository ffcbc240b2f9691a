import { status } from '@grpc/grpc-js';
import { pino } from 'pino';
import { expect, it } from 'vitest';
import { serveMetrics } from '../src/index.js';
import { bearer, call, grpcError } from '../src/testing.js';
import { startFakeGrab } from './fake-grab.js';

const GRAB = '/redpacket.v1.GrabService/Grab';

/** The value of one sample line of the Prometheus text, 0 when absent. */
function sample(text: string, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const inside = line.slice(name.length + 1, line.indexOf('}'));
    if (want.every((w) => inside.split(',').includes(w))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

it('serves /metrics in Prometheus text, and every unary call moves its counter and latency histogram', async () => {
  const log = pino({ level: 'silent' });
  const { client, stop } = await startFakeGrab(log);
  const metrics = await serveMetrics(0, '127.0.0.1');
  const scrape = async (): Promise<string> => {
    const res = await fetch(`http://127.0.0.1:${metrics.port}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    return res.text();
  };
  try {
    const before = await scrape();
    const md = bearer('unused');
    for (let i = 0; i < 3; i++) await call(client.grab, client, { campaignId: 'c', requestId: '' }, md);
    const err = await grpcError(call(client.grab, client, { campaignId: 'bad', requestId: '' }, md));
    expect(err.code).toBe(status.INVALID_ARGUMENT);
    const after = await scrape();

    const delta = (name: string, labels: Record<string, string>): number =>
      sample(after, name, labels) - sample(before, name, labels);
    expect(delta('redpacket_rpc_total', { method: GRAB, code: 'OK' })).toBe(3);
    expect(delta('redpacket_rpc_total', { method: GRAB, code: 'INVALID_ARGUMENT' })).toBe(1);
    expect(delta('redpacket_rpc_duration_seconds_count', { method: GRAB })).toBe(4);
    expect(delta('redpacket_rpc_duration_seconds_bucket', { method: GRAB, le: '+Inf' })).toBe(4);
    expect(after).toMatch(/^process_cpu_user_seconds_total \d/m);
    expect((await fetch(`http://127.0.0.1:${metrics.port}/other`)).status).toBe(404);
  } finally {
    await stop();
    await metrics.close();
  }
});

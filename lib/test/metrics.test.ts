import { credentials, status } from '@grpc/grpc-js';
import { GrabServiceClient, GrabServiceService, Outcome, type GrabServiceServer } from '@redpacket/proto';
import { pino } from 'pino';
import { expect, it } from 'vitest';
import { implement, invalidArgument, serveMetrics, startServer } from '../src/index.js';
import { bearer, call, grpcError } from '../src/testing.js';

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
  const impl = implement<GrabServiceServer>(
    GrabServiceService,
    {
      async grab(req) {
        if (req.campaignId === 'bad') throw invalidArgument('campaign_id', 'is bad');
        return {
          outcome: Outcome.WON,
          packetId: 'p',
          amountCents: 1n,
          nextBatchAt: undefined,
          campaignId: req.campaignId,
        };
      },
      async getCampaign() {
        throw new Error('not used');
      },
    },
    log,
  );
  const server = await startServer({
    services: [{ name: 'redpacket.v1.GrabService', definition: GrabServiceService, implementation: impl }],
    host: '127.0.0.1',
    port: 0,
    log,
  });
  const metrics = await serveMetrics(0, '127.0.0.1');
  const client = new GrabServiceClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
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
    client.close();
    await server.shutdown(1000);
    await metrics.close();
  }
});

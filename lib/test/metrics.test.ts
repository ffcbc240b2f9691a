import { status } from '@grpc/grpc-js';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { expect, it } from 'vitest';
import { dependencyTimer, HotCounter, notFound, registry, serveMetrics, timed } from '../src/index.js';
import { bearer, call, grpcError, metricValue, parsePrometheusText, sampleSum } from '../src/testing.js';
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

it('timed() records the latency of calls that succeed and fail; only real failures count as errors', async () => {
  const op = `test_${Math.random().toString(36).slice(2, 8)}`;
  const labels = { dependency: 'redis', op };
  await expect(timed('redis', op, async () => 'ok')).resolves.toBe('ok');
  await expect(timed('redis', op, () => new Promise((resolve) => setTimeout(() => resolve(1), 30)))).resolves.toBe(1);
  await expect(timed('redis', op, () => Promise.reject(new Error('connection lost')))).rejects.toThrow(
    'connection lost',
  );
  await expect(timed('redis', op, () => Promise.reject(notFound('user x')))).rejects.toThrow('user x');
  expect(await metricValue('redpacket_dependency_duration_seconds_count', labels)).toBe(4);
  // the 30 ms call is above the 25 ms bucket, the others are below it
  expect(await metricValue('redpacket_dependency_duration_seconds_bucket', { ...labels, le: 0.025 })).toBe(3);
  expect(await metricValue('redpacket_dependency_duration_seconds_sum', labels)).toBeGreaterThanOrEqual(0.029);
  expect(await metricValue('redpacket_dependency_errors_total', labels)).toBe(1);
  expect(dependencyTimer('redis', op)).toBe(dependencyTimer('redis', op));
  expect(() => dependencyTimer('amqp', op).timeSync(() => JSON.parse('{'))).toThrow();
  expect(await metricValue('redpacket_dependency_errors_total', { dependency: 'amqp', op })).toBe(1);
});

it('HotCounter: children add up locally and reach the counter at collection; past maxSeries they count as _other', async () => {
  const r = new Registry();
  const hot = new HotCounter({
    name: 'test_hot_total',
    help: 'test',
    labelNames: ['campaign', 'outcome'] as const,
    registers: [r],
    maxSeries: 2,
    overflowLabel: 'campaign',
  });
  const a = hot.child('c1', 'won');
  expect(hot.child('c1', 'won')).toBe(a);
  a.inc();
  a.inc(2);
  hot.child('c1', 'sold_out').inc();
  hot.child('c2', 'won').inc(5); // a third series: over the cap
  hot.child('c3', 'won').inc();
  expect(() => hot.child('c1')).toThrow(/expected 2 label values/);
  const samples = parsePrometheusText(await r.metrics());
  expect(sampleSum(samples, 'test_hot_total', { campaign: 'c1', outcome: 'won' })).toBe(3);
  expect(sampleSum(samples, 'test_hot_total', { campaign: 'c1', outcome: 'sold_out' })).toBe(1);
  expect(sampleSum(samples, 'test_hot_total', { campaign: '_other', outcome: 'won' })).toBe(6);
  expect(sampleSum(samples, 'test_hot_total', { campaign: 'c2' })).toBe(0);
  // a second collection adds only what happened since
  a.inc();
  const again = parsePrometheusText(await r.metrics());
  expect(sampleSum(again, 'test_hot_total', { campaign: 'c1', outcome: 'won' })).toBe(4);
  expect(sampleSum(again, 'test_hot_total')).toBe(11);
});

it('parsePrometheusText reads what prom-client writes, and refuses what is not exposition text', async () => {
  const samples = parsePrometheusText(await registry.metrics());
  expect(samples.length).toBeGreaterThan(10);
  expect(sampleSum(samples, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
  const parsed = parsePrometheusText('# HELP x y\nx{a="1",b="q\\"uote"} 2.5\nx_bucket{le="+Inf"} 3\n');
  expect(parsed).toEqual([
    { name: 'x', labels: { a: '1', b: 'q"uote' }, value: 2.5 },
    { name: 'x_bucket', labels: { le: '+Inf' }, value: 3 },
  ]);
  expect(() => parsePrometheusText('x{a=1} 2')).toThrow(/bad labels/);
  expect(() => parsePrometheusText('<html>')).toThrow(/not a Prometheus sample line/);
  expect(() => parsePrometheusText('x two')).toThrow(/bad value/);
});

import { describe, expect, it } from 'vitest';
import { percentile } from '@redpacket/loadgen';
import { histogram } from '../src/bench/report.js';
import { compile } from '../src/bench/template.js';

const VARS = ['RequestNumber', 'UserId', 'Token'];

describe("bench templates (ghz's syntax)", () => {
  it('renders variables and functions per call, and knows a static template', () => {
    const t = compile(
      '{"n":{{.RequestNumber}},"u":"{{ .UserId }}","s":"{{randomString 8}}","i":{{randomInt 5 6}},"id":"{{newUUID}}"}',
      VARS,
    );
    expect(t.isStatic).toBe(false);
    const a = JSON.parse(t.render({ RequestNumber: 7, UserId: 'u7' })) as Record<string, unknown>;
    expect(a).toMatchObject({ n: 7, u: 'u7', i: 5 });
    expect(a['s']).toMatch(/^[A-Za-z0-9]{8}$/);
    expect(a['id']).toMatch(/^[0-9a-f-]{36}$/);
    const b = JSON.parse(t.render({ RequestNumber: 8, UserId: 'u8' })) as Record<string, unknown>;
    expect(b['s']).not.toBe(a['s']);
    expect(compile('{"campaign_id":"x"}', VARS)).toMatchObject({ isStatic: true });
  });

  it('refuses unknown variables and actions when compiled, before any call', () => {
    expect(() => compile('{{.Nope}}', VARS)).toThrow('unknown variable {{.Nope}}');
    expect(() => compile('{{env "HOME"}}', VARS)).toThrow('unknown action');
    expect(() => compile('{{randomInt 5 5}}', VARS)).toThrow('MAX must exceed MIN');
  });
});

describe("bench report (ghz's shape)", () => {
  it('nearest-rank percentiles and an 11-mark histogram counting every latency once', () => {
    const sorted = Float64Array.from({ length: 100 }, (_, i) => i + 1); // 1..100 ms
    expect(percentile(sorted, 50)).toBe(50);
    expect(percentile(sorted, 99)).toBe(99);
    expect(percentile(new Float64Array(0), 50)).toBe(0);
    const h = histogram(sorted);
    expect(h).toHaveLength(11);
    expect(h[0]).toEqual({ mark: 0.001, count: 1, frequency: 0.01 });
    expect(h[10]!.mark).toBeCloseTo(0.1, 9);
    expect(h.reduce((s, b) => s + b.count, 0)).toBe(100);
  });
});

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { areaOf, summarizeCpuProfile } from '@redpacket/loadgen';

const dir = mkdtempSync(join(tmpdir(), 'cpu-profile-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const frame = (id: number, functionName: string, url = '', lineNumber = 0) => ({
  id,
  callFrame: { functionName, url, lineNumber, scriptId: '0', columnNumber: 0 },
  hitCount: 0,
});

it('sums self time by function and by area, as percent of the busy (non-idle) samples', () => {
  const profile = {
    nodes: [
      frame(1, '(root)'),
      frame(2, '(idle)'),
      frame(3, '(garbage collector)'),
      frame(4, 'Command', 'file:///app/node_modules/ioredis/built/Command.js', 36),
      frame(5, 'grab', 'file:///app/grab-svc/dist/grab.js', 43),
      frame(6, 'respond', 'node:internal/http2/core', 2791),
    ],
    // 1000 µs idle, then busy: GC 300, ioredis 200 + 200 (same function twice), grab 200, http2 100
    samples: [2, 3, 4, 4, 5, 6],
    timeDeltas: [1000, 300, 200, 200, 200, 100],
    startTime: 0,
    endTime: 2000,
  };
  const file = join(dir, 'p.cpuprofile');
  writeFileSync(file, JSON.stringify(profile));
  const s = summarizeCpuProfile(file, 10);
  expect(s.totalMs).toBeCloseTo(2, 6);
  expect(s.idlePercent).toBeCloseTo(50, 6);
  expect(s.functions.map((f) => [f.name, Math.round(f.percent)])).toEqual([
    ['Command ioredis Command.js:37', 40],
    ['(garbage collector)', 30],
    ['grab @redpacket/grab-svc grab.js:44', 20],
    ['respond node:internal core:2792', 10],
  ]);
  expect(s.areas.map((a) => [a.name, Math.round(a.percent)])).toEqual([
    ['ioredis', 40],
    ['(garbage collector)', 30],
    ['@redpacket/grab-svc', 20],
    ['node:internal', 10],
  ]);
});

it('names the area of a script: scoped packages, node internals, workspaces', () => {
  expect(areaOf('file:///x/node_modules/@grpc/grpc-js/build/src/server.js', 'f')).toBe('@grpc/grpc-js');
  expect(areaOf('node:events', 'emit')).toBe('node:events');
  expect(areaOf('file:///x/lib/dist/auth.js', 'verify')).toBe('@redpacket/lib');
  expect(areaOf('', '(program)')).toBe('(program)');
  expect(areaOf('', 'writeUtf8String')).toBe('(native)');
});

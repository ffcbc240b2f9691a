/**
 * Reads a V8 `.cpuprofile` (what `node --cpu-prof` writes) and sums self time by function and
 * by area (a package, node's internals, one of our workspaces, GC), so a benchmark can print
 * where a server's CPU went next to its figures.
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileItem {
  name: string;
  /** Share of the busy (non-idle) sampled time, in percent. */
  percent: number;
  ms: number;
}

export interface ProfileSummary {
  totalMs: number;
  /** Share of time the process was idle (waiting for I/O), in percent. */
  idlePercent: number;
  functions: ProfileItem[];
  areas: ProfileItem[];
}

/** Which part of the code a script URL belongs to: a package, node internals or a workspace. */
export function areaOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  const ws = /\/([a-z-]+)\/dist\//.exec(url);
  return ws ? `@redpacket/${ws[1]}` : url;
}

const top = (m: Map<string, number>, total: number, n: number): ProfileItem[] =>
  [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([name, us]) => ({ name, ms: us / 1000, percent: (100 * us) / total }));

/** Self time by function and by area, the `n` largest of each. */
export function summarizeCpuProfile(file: string, n = 15): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((node) => [node.id, node]));
  const fn = new Map<string, number>();
  const area = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const us = p.timeDeltas[i] ?? 0;
    const node = byId.get(p.samples[i]!);
    if (!node) continue;
    total += us;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') {
      idle += us;
      continue;
    }
    const a = areaOf(url, functionName);
    const file = url ? url.slice(url.lastIndexOf('/') + 1) : '';
    const key = `${functionName || '(anonymous)'} ${file ? `${a === file ? '' : `${a} `}${file}:${lineNumber + 1}` : ''}`;
    fn.set(key.trim(), (fn.get(key.trim()) ?? 0) + us);
    area.set(a, (area.get(a) ?? 0) + us);
  }
  return {
    totalMs: total / 1000,
    idlePercent: total ? (100 * idle) / total : 0,
    functions: top(fn, total - idle || 1, n),
    areas: top(area, total - idle || 1, n),
  };
}

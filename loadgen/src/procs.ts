/** Child processes for benchmarks: servers under test, and h2load as the native reference. */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      s.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

export interface Child {
  proc: ChildProcess;
  /** Resolves with the first stdout/stderr line matching `re`, rejects on exit or timeout. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

/**
 * Spawns `node [nodeArgs] script args` with extra env (nodeArgs e.g. `--cpu-prof`); its output is
 * kept for waitFor and errors.
 */
export function spawnNode(
  script: string | URL,
  args: string[] = [],
  env: Record<string, string> = {},
  nodeArgs: string[] = [],
): Child {
  const path = script instanceof URL ? script.pathname : script;
  const proc = spawn(process.execPath, [...nodeArgs, path, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const listeners = new Set<() => void>();
  // BENCH_CHILD_LOG=<file>: every spawned server's output is appended there too (with
  // BENCH_NODE_FLAGS="--max-semi-space-size=32 --trace-gc", grab-svc's GC pauses: performance.md).
  const copyTo = process.env['BENCH_CHILD_LOG'];
  const onData = (d: Buffer): void => {
    if (copyTo) appendFileSync(copyTo, d);
    output += d.toString();
    if (output.length > 1 << 20) output = output.slice(-(1 << 19));
    listeners.forEach((l) => l());
  };
  proc.stdout?.on('data', onData);
  proc.stderr?.on('data', onData);
  return {
    proc,
    waitFor(re, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const m = output.split('\n').find((l) => re.test(l));
          if (m !== undefined) {
            cleanup();
            resolve(m);
          }
        };
        const onExit = (): void => {
          cleanup();
          reject(new Error(`${path} exited before printing ${re}:\n${output.slice(-2000)}`));
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`${path} did not print ${re} within ${timeoutMs} ms:\n${output.slice(-2000)}`));
        }, timeoutMs);
        const cleanup = (): void => {
          clearTimeout(timer);
          listeners.delete(check);
          proc.off('exit', onExit);
        };
        listeners.add(check);
        proc.once('exit', onExit);
        check();
      });
    },
    stop() {
      return new Promise((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
        setTimeout(() => proc.kill('SIGKILL'), 5000).unref();
      });
    },
  };
}

export interface H2loadResult {
  rps: number;
  succeeded: number;
  failed: number;
  raw: string;
}

/**
 * Runs h2load (Debian's nghttp2-client) against a gRPC method with one pre-framed body:
 * the native reference for what the server can do when the client costs almost nothing.
 */
export function h2load(opts: {
  url: string;
  body: Buffer;
  headers: Record<string, string>;
  requests: number;
  clients: number;
  streams: number;
  threads?: number;
}): Promise<H2loadResult> {
  const dir = mkdtempSync(join(tmpdir(), 'h2load-'));
  const file = join(dir, 'body.bin');
  writeFileSync(file, opts.body);
  const args = [
    '-n',
    String(opts.requests),
    '-c',
    String(opts.clients),
    '-m',
    String(opts.streams),
    '-t',
    String(opts.threads ?? 1),
    '-d',
    file,
    '-H',
    'content-type: application/grpc',
    '-H',
    'te: trailers',
    ...Object.entries(opts.headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]),
    opts.url,
  ];
  return new Promise((resolve, reject) => {
    const p = spawn('h2load', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.once('error', (e) => reject(new Error(`h2load not runnable (apt-get install nghttp2-client): ${e.message}`)));
    p.once('exit', (code) => {
      rmSync(dir, { recursive: true, force: true });
      const rps = /finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(out);
      const req = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed/.exec(out);
      if (code !== 0 || !rps || !req) return reject(new Error(`h2load failed (${code}):\n${out}`));
      resolve({ rps: Number(rps[1]), succeeded: Number(req[1]), failed: Number(req[2]), raw: out });
    });
  });
}

/**
 * CPU time (user + system, ms) a process has used so far, from /proc (Linux). Divided by the
 * calls served, it gives a cost per call that other load on the machine barely changes.
 */
export function cpuTimeMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // fields after the command name, which is in parentheses and may contain spaces
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / CLOCK_TICKS;
}
const CLOCK_TICKS = 100;

/**
 * The 1/5/15-minute load averages and the core count, e.g. "load average 1.02 0.87 0.65 on 2
 * cores": printed by each benchmark at its start and end, so a reader can judge the noise.
 */
export function loadAverageLine(): string {
  const [a, b, c] = loadavg().map((x) => x.toFixed(2));
  return `load average ${a} ${b} ${c} on ${availableParallelism()} cores`;
}

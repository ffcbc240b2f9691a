/** Runs the real `redpacket` binary as a child process against a real grab-svc started here. */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { keys } from '@redpacket/lib';
import { deleteKeys, pollUntil, requireRedis, testSigner, TEST_REDIS_URL } from '@redpacket/lib/testing';
import { freePort, spawnNode, type Child } from '@redpacket/loadgen';
import type { Redis } from 'ioredis';

const root = (p: string): string => fileURLToPath(new URL(`../../${p}`, import.meta.url));
export const CLI = root('admin-cli/bin/redpacket.js');
const GRAB_MAIN = root('grab-svc/dist/main.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment of every CLI run: the test secret, no colours, no inherited token. */
export function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...testSigner().env, NO_COLOR: '1', ...extra };
  delete env['REDPACKET_TOKEN'];
  delete env['FORCE_COLOR'];
  if (extra['REDPACKET_TOKEN']) env['REDPACKET_TOKEN'] = extra['REDPACKET_TOKEN'];
  return env;
}

/** Starts `redpacket args...`; the caller collects its output. */
export function startCli(args: string[], env: Record<string, string> = {}): ChildProcess & { out: CliResult } {
  const proc = spawn(process.execPath, [CLI, ...args], { env: cliEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  const out: CliResult = { code: null, stdout: '', stderr: '' };
  proc.stdout.on('data', (d: Buffer) => (out.stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (out.stderr += d.toString()));
  return Object.assign(proc, { out });
}

/** Runs `redpacket args...` to the end. */
export function cli(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<CliResult> {
  const p = startCli(args, env);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`redpacket ${args.join(' ')} did not finish in ${timeoutMs} ms:\n${p.out.stderr}`));
    }, timeoutMs);
    // 'close', not 'exit': only then has all of stdout and stderr been read
    p.once('close', (code) => {
      clearTimeout(timer);
      resolve({ ...p.out, code });
    });
  });
}

/** Runs a --json command that must succeed, and parses its output. */
export async function cliJson<T = Record<string, unknown>>(
  args: string[],
  env: Record<string, string> = {},
): Promise<T> {
  const r = await cli(['--json', ...args], env);
  if (r.code !== 0) throw new Error(`redpacket ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

export interface GrabServer {
  port: number;
  address: string;
  redis: Redis;
  env: Record<string, string>;
  /** Remembers a campaign for cleanup. */
  track(id: string): string;
  stop(): Promise<void>;
}

/** Spawns grab-svc (its built main.js) on a free port with the test secret; `extra` adds to its env. */
export async function startGrabSvc(extra: Record<string, string> = {}): Promise<GrabServer> {
  const redis = await requireRedis();
  const port = await freePort();
  const child: Child = spawnNode(GRAB_MAIN, [], {
    GRPC_PORT: String(port),
    // The shared test Redis keeps nothing on disk: best effort, opted into explicitly.
    REDIS_DURABILITY: 'none',
    ...testSigner().env,
    REDIS_URL: TEST_REDIS_URL,
    LOG_LEVEL: 'info',
    // A relay would read every campaign's outbox in this shared Redis, other tests' included;
    // the settle timer would settle their ended campaigns.
    RELAY_ENABLED: '0',
    SETTLE_EVERY_MS: '0',
    ...extra,
  });
  await child.waitFor(/gRPC server listening/);
  const created = new Set<string>();
  const address = `127.0.0.1:${port}`;
  return {
    port,
    address,
    redis,
    env: { GRAB_ADDR: address },
    track(id) {
      created.add(id);
      return id;
    },
    async stop() {
      await child.stop();
      for (const id of created) {
        await deleteKeys(redis, `rp:{${id}}:*`);
        await redis.zrem(keys.campaigns, id);
      }
      await redis.quit();
    },
  };
}

/** True once no process has this pid. */
export function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

export { pollUntil };

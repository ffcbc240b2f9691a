/** The demo's child processes: every service workspace that is built in this checkout. */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRedisServer, type LocalRedisServer } from '@redpacket/lib';
import { freePort, spawnNode, type Child } from '@redpacket/loadgen';

/** The repository root, from admin-cli/dist/demo/. */
const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export type ServiceName = 'grab-svc' | 'account-svc' | 'gift-svc';
export const SERVICE_NAMES: ServiceName[] = ['grab-svc', 'account-svc', 'gift-svc'];

/** How a workspace's `npm start` runs it: `node [--flag ...] <script>`. */
export interface ServiceCommand {
  script: string;
  /** Node's own flags from the start script (e.g. grab-svc's `--max-semi-space-size=32`). */
  nodeArgs: string[];
}

/** The command a workspace's `npm start` runs, if this checkout has the workspace built. */
export function serviceCommand(name: ServiceName): ServiceCommand | undefined {
  const manifest = `${REPO_ROOT}${name}/package.json`;
  if (!existsSync(manifest)) return undefined;
  const start = (JSON.parse(readFileSync(manifest, 'utf8')) as { scripts?: { start?: string } }).scripts?.start ?? '';
  const m = /^node((?:\s+--\S+)*)\s+(\S+\.js)$/.exec(start.trim());
  if (!m) return undefined;
  const script = `${REPO_ROOT}${name}/${m[2]}`;
  return existsSync(script) ? { script, nodeArgs: (m[1] ?? '').trim().split(/\s+/).filter(Boolean) } : undefined;
}

export interface RunningService {
  name: ServiceName;
  port: number;
  address: string;
  pid: number | undefined;
  child: Child;
}

/**
 * Starts a service on a free port and waits until it serves (lib's startServer logs
 * "gRPC server listening"). Its output is kept in memory and shown only if it fails.
 */
export async function startService(
  name: ServiceName,
  env: Record<string, string>,
  /** Called with the child as soon as it exists, so a Ctrl-C during start-up stops it too. */
  spawned: (child: Child) => void,
  timeoutMs = 30_000,
): Promise<RunningService> {
  const command = serviceCommand(name);
  if (!command) throw new Error(`${name} is not built in this checkout`);
  const port = await freePort();
  const child = spawnNode(command.script, [], { ...env, GRPC_PORT: String(port), LOG_LEVEL: 'info' }, command.nodeArgs);
  spawned(child);
  try {
    await child.waitFor(/gRPC server listening/, timeoutMs);
  } catch (err) {
    await child.stop();
    throw err;
  }
  return { name, port, address: `127.0.0.1:${port}`, pid: child.proc.pid, child };
}

/**
 * A redis-server of the demo's own, configured as shipped (appendonly yes, appendfsync always),
 * its AOF in a temporary directory removed by stop().
 */
export async function startDurableRedis(): Promise<{ server: LocalRedisServer; stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'redpacket-demo-redis-'));
  const server = await startRedisServer(await freePort(), { appendfsync: 'always', dir });
  return {
    server,
    async stop() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

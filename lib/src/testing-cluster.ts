/**
 * A real Redis Cluster for tests: 6 redis-server processes (3 masters, 3 replicas) on local
 * ports, each in a temp dir of its own, nothing on disk. Stopped by pid, never by pattern.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, unlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

/** Ports this helper may use: 6 client ports and 6 cluster-bus ports a cluster. */
export const CLUSTER_PORT_RANGE = { first: 17400, last: 17499 } as const;
const PORTS_PER_CLUSTER = 12;

export interface TestRedisCluster {
  /** "127.0.0.1:p1,127.0.0.1:p2,...": the value for REDIS_CLUSTER_NODES. */
  nodes: string;
  ports: number[];
  /** A plain connection to each node (for CLUSTER commands); closed by stop(). */
  node(port: number): Redis;
  /** SIGKILLs one node's process (a crash: nothing saved, no goodbye to the cluster). */
  kill(port: number): Promise<void>;
  /** Starts a killed node again with its own config file: it rejoins (a dead master as a replica). */
  restart(port: number): Promise<void>;
  stop(): Promise<void>;
}

const HOW_TO_INSTALL = 'install it with: apt-get install redis-server (Debian; it also brings redis-cli)';

function requireBinary(name: string): void {
  const r = spawnSync(name, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error(
      `${name} is needed to start a test Redis Cluster but was not found (${r.error?.message}); ${HOW_TO_INSTALL}`,
    );
  }
}

const portFree = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Claims a block of 12 ports with a lock file (several test files run at once); a lock left by
 * a dead process is taken over.
 */
async function claimPorts(): Promise<{ base: number; lock: string }> {
  const { first, last } = CLUSTER_PORT_RANGE;
  for (let base = first; base + PORTS_PER_CLUSTER - 1 <= last; base += PORTS_PER_CLUSTER) {
    const lock = join(tmpdir(), `redpacket-test-cluster-${base}.lock`);
    try {
      writeFileSync(lock, String(process.pid), { flag: 'wx' });
    } catch {
      const owner = Number(readFileSync(lock, 'utf8'));
      if (owner && pidAlive(owner)) continue;
      rmSync(lock, { force: true });
      try {
        writeFileSync(lock, String(process.pid), { flag: 'wx' });
      } catch {
        continue;
      }
    }
    const ports = Array.from({ length: PORTS_PER_CLUSTER }, (_, i) => base + i);
    const free = await Promise.all(ports.map(portFree));
    if (free.every(Boolean)) return { base, lock };
    unlinkSync(lock);
  }
  throw new Error(`no free block of ${PORTS_PER_CLUSTER} ports in ${first}-${last} for a test Redis Cluster`);
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline)
      throw new Error(`test Redis Cluster: timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function stopProcess(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null || p.pid === undefined) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      if (p.pid !== undefined && pidAlive(p.pid)) process.kill(p.pid, 'SIGKILL');
    }, 5000);
    p.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    process.kill(p.pid!, 'SIGTERM');
  });
}

/** Starts 6 nodes, creates the cluster (3 masters, 1 replica each) and waits for cluster_state:ok. */
export async function startRedisCluster(): Promise<TestRedisCluster> {
  requireBinary('redis-server');
  requireBinary('redis-cli');
  const { base, lock } = await claimPorts();
  const ports = Array.from({ length: 6 }, (_, i) => base + i);
  const dirs: string[] = [];
  const procs: ChildProcess[] = [];
  const conns = new Map<number, Redis>();
  let stopped = false;
  // A test process that dies without afterAll still takes its servers with it.
  const onExit = (): void => {
    for (const p of procs) if (p.pid !== undefined && p.exitCode === null) process.kill(p.pid, 'SIGKILL');
  };
  process.once('exit', onExit);

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    for (const c of conns.values()) c.disconnect();
    await Promise.all(procs.map(stopProcess));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    rmSync(lock, { force: true });
    process.off('exit', onExit);
  };

  const node = (port: number): Redis => {
    let c = conns.get(port);
    if (!c) {
      c = new Redis({ host: '127.0.0.1', port, lazyConnect: false, maxRetriesPerRequest: 1 });
      c.on('error', () => undefined);
      conns.set(port, c);
    }
    return c;
  };

  const spawnNode = (i: number): ChildProcess => {
    const port = ports[i] as number;
    const dir = dirs[i] as string;
    return spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--cluster-port',
        String(base + 6 + i),
        '--bind',
        '127.0.0.1',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(dir, 'nodes.conf'),
        '--cluster-node-timeout',
        '5000',
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        'no',
        '--daemonize',
        'no',
        '--logfile',
        join(dir, 'redis.log'),
      ],
      { stdio: 'ignore' },
    );
  };
  const kill = async (port: number): Promise<void> => {
    const p = procs[ports.indexOf(port)];
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    conns.get(port)?.disconnect();
    conns.delete(port);
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGKILL');
    });
  };
  const restart = async (port: number): Promise<void> => {
    const i = ports.indexOf(port);
    if (i < 0) throw new Error(`port ${port} is not a node of this test cluster`);
    await kill(port);
    procs[i] = spawnNode(i);
    await waitFor(`redis-server on ${port} again`, async () => (await node(port).ping()) === 'PONG', 10_000);
  };

  try {
    for (const port of ports) dirs.push(mkdtempSync(join(tmpdir(), `redpacket-cluster-${port}-`)));
    for (let i = 0; i < ports.length; i++) procs.push(spawnNode(i));
    for (const port of ports) {
      await waitFor(`redis-server on ${port}`, async () => (await node(port).ping()) === 'PONG', 10_000);
    }
    const created = spawnSync(
      'redis-cli',
      ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes'],
      { encoding: 'utf8', timeout: 60_000 },
    );
    if (created.status !== 0) {
      throw new Error(`redis-cli --cluster create failed: ${created.stdout}\n${created.stderr}`);
    }
    for (const port of ports) {
      await waitFor(
        `cluster_state:ok on ${port}`,
        async () => (await node(port).cluster('INFO')).includes('cluster_state:ok'),
        30_000,
      );
    }
    // Replicas in sync with their masters: a WAIT (REDIS_WAIT_REPLICAS) can be acknowledged.
    for (const port of ports) {
      await waitFor(
        `the replica of ${port} online`,
        async () => {
          const info = await node(port).info('replication');
          return info.includes('role:slave')
            ? info.includes('master_link_status:up')
            : /slave0:.*state=online/.test(info);
        },
        30_000,
      );
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { nodes: ports.map((p) => `127.0.0.1:${p}`).join(','), ports, node, kill, restart, stop };
}

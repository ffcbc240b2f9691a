/**
 * WORKERS=N: the primary process forks N workers with node:cluster and serves nothing itself;
 * each worker is a complete grab-svc (its own Redis connections and eligibility copy) and they
 * share the gRPC port, the primary handing out connections round-robin. Works because every
 * grab is one atomic script call: workers share nothing but Redis.
 */
import cluster from 'node:cluster';
import type { Logger } from '@redpacket/lib';

/**
 * In the primary with n > 1: forks the workers, replaces one that dies unexpectedly, forwards
 * SIGTERM/SIGINT and exits once they all have; never resolves. Otherwise resolves at once and
 * the caller serves.
 */
export function superviseWorkers(n: number, log: Logger): Promise<void> {
  if (n <= 1 || !cluster.isPrimary) return Promise.resolve();
  let stopping = false;
  let failed = false;
  const startedAt = new Map<number, number>();
  let quickDeaths = 0;
  const fork = (): void => {
    const w = cluster.fork();
    startedAt.set(w.id, Date.now());
  };
  cluster.on('listening', (w, addr) =>
    log.info({ worker: w.id, pid: w.process.pid, port: addr.port }, 'worker listening'),
  );
  for (let i = 0; i < n; i++) fork();
  cluster.on('exit', (w, code, signal) => {
    if (!stopping) {
      // A worker that dies at once (Redis unreachable, say) is restarted with a growing delay.
      const lived = Date.now() - (startedAt.get(w.id) ?? 0);
      quickDeaths = lived < 10_000 ? quickDeaths + 1 : 0;
      const delayMs = quickDeaths ? Math.min(30_000, 100 * 2 ** quickDeaths) : 0;
      log.error({ worker: w.id, pid: w.process.pid, code, signal, delayMs }, 'worker died; starting another');
      setTimeout(() => {
        if (!stopping) fork();
      }, delayMs);
      return;
    }
    startedAt.delete(w.id);
    if (code !== 0) failed = true;
    if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(failed ? 1 : 0);
  });
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, workers: n }, 'stopping workers');
    const alive = Object.values(cluster.workers ?? {});
    // All dead and a restart still waiting: nothing to wait for.
    if (alive.length === 0) process.exit(failed ? 1 : 0);
    for (const w of alive) w?.process.kill('SIGTERM');
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  return new Promise<void>(() => undefined);
}

/**
 * WORKERS=N for every service: the primary process forks N workers with node:cluster and serves
 * nothing itself but the metrics; each worker is a complete service (its own connections) and
 * they share the gRPC port, the primary handing out connections round-robin. Correct wherever
 * workers share nothing but Redis, RabbitMQ and MySQL, which is the design: N workers on one host
 * are N replicas.
 */
import cluster from 'node:cluster';
import { createServer, type Server } from 'node:http';
import { AggregatorRegistry, type Registry } from 'prom-client';
import { z } from 'zod';
import type { Logger } from './logger.js';
import { registry } from './metrics.js';

/** The `WORKERS` environment variable: processes sharing the port; 1 serves in this process. */
export const WorkersEnv = z.coerce.number().int().min(1).max(64).default(1);

export interface SuperviseOptions {
  /**
   * The service's METRICS_PORT. With several workers no two processes can bind it: the primary
   * serves it alone, with every worker's metrics summed (prom-client's AggregatorRegistry over
   * the cluster IPC channel), and the workers serve none.
   */
  metricsPort?: number;
  /** The registries a worker reports to the primary: those its /metrics would serve (default lib's). */
  registries?: Registry[];
  /** Signals the primary passes on to every worker (gateway's SIGHUP: reload the rules). */
  forward?: NodeJS.Signals[];
}

export interface WorkerRole {
  /** The port this process serves its own metrics on: 0 in a worker of WORKERS > 1. */
  metricsPort: number;
}

/**
 * In the primary with n > 1: forks the workers, replaces one that dies unexpectedly, serves
 * their summed metrics on metricsPort, forwards SIGTERM/SIGINT and exits once they all have;
 * never resolves. In a worker: arranges for its metrics to reach the primary and resolves with
 * metricsPort 0. With n = 1: resolves at once with metricsPort unchanged, and the caller serves.
 */
export function superviseWorkers(n: number, log: Logger, opts: SuperviseOptions = {}): Promise<WorkerRole> {
  const metricsPort = opts.metricsPort ?? 0;
  if (n <= 1) return Promise.resolve({ metricsPort });
  if (cluster.isWorker) {
    // The constructor installs the listener that answers the primary's metric requests.
    new AggregatorRegistry();
    AggregatorRegistry.setRegistries(opts.registries ?? [registry]);
    return Promise.resolve({ metricsPort: 0 });
  }
  let stopping = false;
  let failed = false;
  const startedAt = new Map<number, number>();
  let quickDeaths = 0;
  let metrics: Server | undefined;
  const exit = (): void => {
    metrics?.close();
    process.exit(failed ? 1 : 0);
  };
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
    if (Object.keys(cluster.workers ?? {}).length === 0) exit();
  });
  if (metricsPort > 0) metrics = serveClusterMetrics(metricsPort, log);
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, workers: n }, 'stopping workers');
    const alive = Object.values(cluster.workers ?? {});
    // All dead and a restart still waiting: nothing to wait for.
    if (alive.length === 0) exit();
    for (const w of alive) w?.process.kill('SIGTERM');
  };
  for (const signal of opts.forward ?? []) {
    process.on(signal, () => {
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill(signal);
    });
  }
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  return new Promise<WorkerRole>(() => undefined);
}

/** GET /metrics in the primary: every live worker's registries, summed per series. */
function serveClusterMetrics(port: number, log: Logger): Server {
  const aggregator = new AggregatorRegistry();
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url !== '/metrics') return void res.writeHead(404).end();
    aggregator.clusterMetrics().then(
      (text) => res.writeHead(200, { 'content-type': aggregator.contentType }).end(text),
      (err: Error) => res.writeHead(500).end(`metrics of the workers not collected: ${err.message}`),
    );
  });
  server.on('error', (err) => log.error({ err: err.message, port }, 'metrics port not served'));
  server.listen(port, () => log.info({ port }, "serving the workers' summed metrics"));
  return server;
}

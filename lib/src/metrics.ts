/**
 * Prometheus metrics shared by every service: one registry a process, the process's default
 * metrics, the RPC metrics that implement() records for every unary call, the latency of every
 * call to a dependency (Redis, MySQL, RabbitMQ), and HotCounter for counters on hot paths.
 */
import { createServer, type Server } from 'node:http';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { ServiceError } from './errors.js';

export const registry = new Registry();
collectDefaultMetrics({ register: registry });

export const rpcTotal = new Counter({
  name: 'redpacket_rpc_total',
  help: 'gRPC calls handled, by method and status code',
  labelNames: ['method', 'code'] as const,
  registers: [registry],
});

export const rpcSeconds = new Histogram({
  name: 'redpacket_rpc_duration_seconds',
  help: 'gRPC call latency in the handler, by method',
  labelNames: ['method'] as const,
  buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  registers: [registry],
});

/** 1 while the process's gRPC health is SERVING, 0 while NOT_SERVING (a dependency away, draining). */
export const healthServing = new Gauge({
  name: 'redpacket_health_serving',
  help: 'gRPC health of this process: 1 SERVING, 0 NOT_SERVING (a dependency does not answer, or draining)',
  // with WORKERS, the primary reports the least healthy worker
  aggregator: 'min',
  registers: [registry],
});

const singletons = new Map<string, unknown>();

/**
 * The object made by `create` under `key`, made once a process: a service module loaded twice
 * (from src/ and from dist/, as tests do) must not register its metrics twice, and its copies
 * must share what the metrics' collect() callbacks read.
 */
export function shared<T>(key: string, create: () => T): T {
  if (!singletons.has(key)) singletons.set(key, create());
  return singletons.get(key) as T;
}

/** The servers the services depend on, as the `dependency` label says them. */
export type Dependency = 'redis' | 'mysql' | 'amqp';

export const dependencySeconds = new Histogram({
  name: 'redpacket_dependency_duration_seconds',
  help: 'Latency of calls to Redis, MySQL and RabbitMQ (failed ones included), by dependency and operation',
  labelNames: ['dependency', 'op'] as const,
  buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  registers: [registry],
});

export const dependencyErrors = new Counter({
  name: 'redpacket_dependency_errors_total',
  help: 'Calls to Redis, MySQL and RabbitMQ that failed (rejected or timed out), by dependency and operation',
  labelNames: ['dependency', 'op'] as const,
  registers: [registry],
});

/** One (dependency, op) series pair, its label children bound once. */
export class DependencyTimer {
  private readonly seconds;
  private readonly errors;

  constructor(
    readonly dependency: Dependency,
    readonly op: string,
  ) {
    this.seconds = dependencySeconds.labels(dependency, op);
    this.errors = dependencyErrors.labels(dependency, op);
  }

  /** Runs `work`, recording how long its promise took to settle and whether it failed. */
  time<T>(work: () => Promise<T>): Promise<T> {
    return this.since(performance.now(), work());
  }

  /** Records `p` as a call that began at `startMs` (performance.now()), e.g. a publish awaiting its confirm. */
  since<T>(startMs: number, p: Promise<T>): Promise<T> {
    return p.then(
      (v) => {
        this.seconds.observe((performance.now() - startMs) / 1000);
        return v;
      },
      (err: unknown) => {
        this.seconds.observe((performance.now() - startMs) / 1000);
        // A ServiceError (e.g. NOT_FOUND thrown inside a transaction) is an answer, not a failure.
        if (!(err instanceof ServiceError)) this.errors.inc();
        throw err;
      },
    );
  }

  /** Records a synchronous call (e.g. amqplib's ack, which writes to the socket and returns). */
  timeSync<T>(work: () => T): T {
    const start = performance.now();
    try {
      return work();
    } catch (err) {
      this.errors.inc();
      throw err;
    } finally {
      this.seconds.observe((performance.now() - start) / 1000);
    }
  }
}

const timers = new Map<string, DependencyTimer>();

/** The timer of (dependency, op); hot paths keep the returned object instead of asking again. */
export function dependencyTimer(dependency: Dependency, op: string): DependencyTimer {
  const k = `${dependency}\u0000${op}`;
  let t = timers.get(k);
  if (!t) {
    t = new DependencyTimer(dependency, op);
    timers.set(k, t);
  }
  return t;
}

/** `await timed('mysql', 'write_awards', () => writeAwards(pool, wins))`: the call, timed. */
export function timed<T>(dependency: Dependency, op: string, work: () => Promise<T>): Promise<T> {
  return dependencyTimer(dependency, op).time(work);
}

/** A cached child of a HotCounter: inc() is one addition, no label hashing. */
export interface HotChild {
  inc(by?: number): void;
}

/**
 * A prom-client Counter for hot paths. prom-client hashes the label values into a string on every
 * inc(), even through a labels() child (~0.3 µs); a HotChild only adds to a number, and the sums
 * move into the Counter when the registry is collected (a scrape). `maxSeries` bounds the label
 * combinations: past it, new ones count under `overflowValue` in the label `overflowLabel`.
 */
export class HotCounter<L extends string> {
  readonly counter: Counter<L>;
  readonly name: string;
  private readonly labelNames: readonly L[];
  private readonly root = new Map<string, unknown>();
  private readonly pending: { labels: Record<L, string>; n: number }[] = [];
  private readonly maxSeries: number;
  private readonly overflowIndex: number;
  private readonly overflowValue: string;

  constructor(opts: {
    name: string;
    help: string;
    labelNames: readonly L[];
    registers?: Registry[];
    maxSeries?: number;
    overflowLabel?: L;
    overflowValue?: string;
  }) {
    if (opts.labelNames.length === 0) throw new Error(`${opts.name}: a HotCounter needs labels`);
    this.name = opts.name;
    this.labelNames = opts.labelNames;
    this.maxSeries = opts.maxSeries ?? 10_000;
    this.overflowIndex = opts.overflowLabel ? opts.labelNames.indexOf(opts.overflowLabel) : 0;
    this.overflowValue = opts.overflowValue ?? '_other';
    const pending = this.pending;
    this.counter = new Counter<L>({
      name: opts.name,
      help: opts.help,
      labelNames: opts.labelNames,
      registers: opts.registers ?? [registry],
      collect() {
        for (const p of pending) {
          if (p.n === 0) continue;
          const n = p.n;
          p.n = 0;
          this.inc(p.labels, n);
        }
      },
    });
  }

  /** The child for these label values (in labelNames order); keep it where the values are fixed. */
  child(...values: string[]): HotChild {
    if (values.length !== this.labelNames.length) {
      throw new Error(`${this.name}: expected ${this.labelNames.length} label values, got ${values.length}`);
    }
    const found = this.lookup(values);
    if (found) return found;
    if (this.pending.length >= this.maxSeries) {
      const capped = values.slice();
      capped[this.overflowIndex] = this.overflowValue;
      return this.lookup(capped) ?? this.add(capped);
    }
    return this.add(values);
  }

  private lookup(values: string[]): HotChild | undefined {
    let node: Map<string, unknown> | undefined = this.root;
    for (let i = 0; i < values.length - 1 && node; i++) node = node.get(values[i] as string) as typeof node;
    return node?.get(values[values.length - 1] as string) as HotChild | undefined;
  }

  private add(values: string[]): HotChild {
    const labels = Object.fromEntries(this.labelNames.map((l, i) => [l, values[i]])) as Record<L, string>;
    const p = { labels, n: 0 };
    this.pending.push(p);
    const child: HotChild = {
      inc(by = 1) {
        p.n += by;
      },
    };
    let node = this.root;
    for (let i = 0; i < values.length - 1; i++) {
      const v = values[i] as string;
      let next = node.get(v) as Map<string, unknown> | undefined;
      if (!next) {
        next = new Map();
        node.set(v, next);
      }
      node = next;
    }
    node.set(values[values.length - 1] as string, child);
    return child;
  }
}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

/** Serves the registry as Prometheus text at GET /metrics on host:port (port 0 = any). */
export function serveMetrics(port: number, host = '0.0.0.0'): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => res.writeHead(500).end(String(err)),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const addr = server.address();
      resolve({
        port: typeof addr === 'object' && addr ? addr.port : port,
        close: () => new Promise((r) => server.close(() => r())),
      });
    });
  });
}

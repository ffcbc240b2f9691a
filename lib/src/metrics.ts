/**
 * Prometheus metrics shared by every service: one registry a process, the process's default
 * metrics, and the RPC metrics that implement() records for every unary call.
 */
import { createServer, type Server } from 'node:http';
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';

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

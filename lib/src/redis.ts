/** Redis connections: one URL for a single server, or a node list for Redis Cluster. */
import { Cluster, Redis } from 'ioredis';

export type RedisClient = Redis | Cluster;

export interface RedisOptions {
  url: string;
  /** "host:port,host:port": when set, ioredis Cluster is used instead of `url`. */
  clusterNodes?: string | undefined;
  /** Batches commands issued in the same tick into one write. */
  autoPipelining?: boolean;
}

export function createRedis(opts: RedisOptions): RedisClient {
  const common = { enableAutoPipelining: opts.autoPipelining ?? false, maxRetriesPerRequest: 2 };
  if (opts.clusterNodes) {
    const nodes = opts.clusterNodes.split(',').map((hp) => {
      const [host, port] = hp.trim().split(':');
      return { host: host ?? '127.0.0.1', port: Number(port ?? 6379) };
    });
    return new Cluster(nodes, { ...common, redisOptions: { maxRetriesPerRequest: 2 } });
  }
  return new Redis(opts.url, common);
}

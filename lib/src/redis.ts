/** Redis connections: one URL for a single server, or a node list for Redis Cluster. */
import { Cluster, Redis } from 'ioredis';
import { campaignKeys, keys, type CampaignShape } from './keys.js';

export type RedisClient = Redis | Cluster;

export interface RedisOptions {
  url: string;
  /** "host:port,host:port": when set, ioredis Cluster is used instead of `url`. */
  clusterNodes?: string | undefined;
  /** Batches commands issued in the same tick into one write. */
  autoPipelining?: boolean;
  /**
   * false: a command issued while disconnected fails at once instead of waiting for the
   * reconnection (for callers with a fallback, such as gateway's fail-open). Default true.
   */
  offlineQueue?: boolean;
  /** Fails a command that got no reply within this many ms (default: no limit). */
  commandTimeoutMs?: number;
}

export function createRedis(opts: RedisOptions): RedisClient {
  const perNode = {
    maxRetriesPerRequest: 2,
    ...(opts.commandTimeoutMs ? { commandTimeout: opts.commandTimeoutMs } : {}),
  };
  const common = {
    ...perNode,
    enableAutoPipelining: opts.autoPipelining ?? false,
    enableOfflineQueue: opts.offlineQueue ?? true,
  };
  if (opts.clusterNodes) {
    const nodes = opts.clusterNodes.split(',').map((hp) => {
      const [host, port] = hp.trim().split(':');
      return { host: host ?? '127.0.0.1', port: Number(port ?? 6379) };
    });
    return new Cluster(nodes, { ...common, redisOptions: perNode });
  }
  return new Redis(opts.url, common);
}

/**
 * Removes one campaign from Redis: every key of campaignKeys (one key a DEL: its pools are on
 * other Cluster slots) and its entries in the campaign indexes.
 */
export async function deleteCampaign(redis: RedisClient, campaignId: string, shape: CampaignShape): Promise<void> {
  await Promise.all(campaignKeys(campaignId, shape).map((k) => redis.del(k)));
  await Promise.all([redis.zrem(keys.campaigns, campaignId), redis.zrem(keys.liveCampaigns, campaignId)]);
}

/** The relay's environment variables, shared by grab-svc's main and the stand-alone relay. */
import { hostname } from 'node:os';
import { topologySuffix, urlVar } from '@redpacket/lib';
import { DEFAULT_AMQP_URL } from '@redpacket/wins';
import { z } from 'zod';

export const RelayEnv = z.object({
  AMQP_URL: urlVar(DEFAULT_AMQP_URL),
  RELAY_ENABLED: z.enum(['0', '1']).default('1'),
  RELAY_BATCH: z.coerce.number().int().min(1).max(10_000).default(500),
  RELAY_CLAIM_IDLE_MS: z.coerce.number().int().min(100).default(10_000),
  WINS_TOPOLOGY_SUFFIX: topologySuffix(),
  /**
   * Which campaigns the relay (and grab-svc's settle timer) act on: "all" in rp:campaigns, or
   * only those created through this process ("created-here": a demo or test sharing its Redis
   * with others must not drain or settle their campaigns).
   */
  RELAY_SCOPE: z.enum(['all', 'created-here']).default('all'),
  RELAY_CONNECTION_NAME: z.string().default(`relay@${hostname()}/${process.pid}`),
});
export type RelayEnv = z.infer<typeof RelayEnv>;

/** grab-svc's main with its relay: wins of the campaigns it created reach RabbitMQ, others' stay. */
import { credentials } from '@grpc/grpc-js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { Pool } from '@redpacket/db';
import { keys, signToken } from '@redpacket/lib';
import { bearer, call, pollUntil, requireRedis, TEST_JWT_SECRET } from '@redpacket/lib/testing';
import { freePort, spawnNode } from '@redpacket/loadgen';
import { AdminServiceClient, Split } from '@redpacket/proto';
import {
  dropCampaign,
  dropTopology,
  grabMany,
  makeCampaign,
  queueDepth,
  requireMysql,
  requireTopology,
} from '../../gift-svc/test/harness.js';

let redis: Redis;
let pool: Pool;
const ids: string[] = [];

beforeAll(async () => {
  redis = await requireRedis();
  pool = await requireMysql(2);
});

afterAll(async () => {
  for (const id of ids) await dropCampaign(redis, pool, id);
  await pool.end();
  redis.disconnect();
});

it('relays the wins of the campaigns it created (RELAY_SCOPE=created-here), and no others', async () => {
  const t = await requireTopology();
  const suffix = t.queue.slice('gift.wins.'.length);
  const other = await makeCampaign(redis, pool, { count: 20, totalCents: 2000 });
  ids.push(other.id);
  const port = await freePort();
  const child = spawnNode(new URL('../dist/main.js', import.meta.url), [], {
    GRPC_PORT: String(port),
    JWT_SECRET: TEST_JWT_SECRET,
    WINS_TOPOLOGY_SUFFIX: suffix,
    RELAY_SCOPE: 'created-here',
    RELAY_CONNECTION_NAME: `test-relay-main-${suffix}`,
    SETTLE_EVERY_MS: '0',
  });
  const admin = new AdminServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
  try {
    await child.waitFor(/gRPC server listening/);
    const md = bearer(await signToken({ secret: TEST_JWT_SECRET, userId: 'ops', role: 'admin' }));
    const mine = await call(
      admin.createCampaign,
      admin,
      {
        name: 'relay main',
        totalCents: 5000n,
        packetCount: 50,
        split: Split.RANDOM,
        batches: 1,
        batchIntervalMs: 0n,
        startsAt: undefined,
        expiresAt: new Date(Date.now() + 600_000),
        ownerId: 'ops',
        eligibility: undefined,
      },
      md,
    );
    ids.push(mine.campaignId);
    expect(await grabMany(redis, mine.campaignId, 30, 'm')).toBe(30);
    expect(await grabMany(redis, other.id, 5, 'o')).toBe(5);
    await pollUntil('its wins relayed', async () => (await queueDepth(t.queue)) === 30, 20_000);
    await pollUntil('its outbox drained', async () => (await redis.xlen(keys.outbox(mine.campaignId))) === 0);
    // The campaign it did not create is left alone.
    expect(await redis.xlen(keys.outbox(other.id))).toBe(5);
  } finally {
    admin.close();
    await child.stop();
    await dropTopology(t);
  }
});

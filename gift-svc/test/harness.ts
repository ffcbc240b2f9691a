/**
 * Shared set-up of the pipeline's tests: real MySQL and RabbitMQ (failing with how to start
 * them), campaigns written by grab-svc's own code, grabs through the real grab script, and
 * clean-up of exactly what one test created.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { createLogger, type RedisClient } from '@redpacket/lib';
import { dropCampaignKeys, requireRedis, TEST_AMQP_URL, TEST_MYSQL_URL } from '@redpacket/lib/testing';
import { createPool, migrate, type Pool } from '@redpacket/db';
import { accountId, audit, balanceOf, EXTERNAL, transfer } from '@redpacket/ledger';
import { depositBudget } from '@redpacket/ledger/testing';
import { connectAmqp, deleteTopology, topologyWithSuffix, type Topology, type WinEvent } from '@redpacket/wins';
import { Split } from '@redpacket/proto';
import { validateCreate, writeCampaign, type CampaignMeta } from '@redpacket/grab-svc/campaigns';
import { ELIGIBLE } from '@redpacket/grab-svc/eligibility-mirror';
import { grabScript, registerScripts } from '@redpacket/grab-svc/scripts';
import { OutboxRelay, type RelayOptions } from '@redpacket/grab-svc/relay/outbox-relay';
import { winsQueueDepth } from '@redpacket/grab-svc/restore';
import { writeAwards } from '../src/awards-writer.js';
import { GiftConsumer, type GiftConsumerOptions } from '../src/consumer.js';
import type { RowDataPacket } from 'mysql2/promise';

const run = promisify(execFile);

export const silent = createLogger('test', 'silent');
export const uid = (): string => randomBytes(6).toString('hex');

/** Migrates and opens a pool on the test database, or fails saying how to start MariaDB. */
export async function requireMysql(connectionLimit = 10): Promise<Pool> {
  try {
    await migrate(TEST_MYSQL_URL);
  } catch (err) {
    throw new Error(
      `MySQL is not reachable at ${TEST_MYSQL_URL} (${(err as Error).message}); start it with: ` +
        'start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd (or scripts/setup.sh)',
      { cause: err },
    );
  }
  return createPool(TEST_MYSQL_URL, connectionLimit);
}

/** A topology of its own for one test, declared; fails saying how to start RabbitMQ. */
export async function requireTopology(): Promise<Topology> {
  const t = topologyWithSuffix(`test-${uid()}`);
  try {
    const conn = await connectAmqp(TEST_AMQP_URL, `test-setup-${t.queue}`);
    await conn.close();
  } catch (err) {
    throw new Error(
      `RabbitMQ is not reachable at ${TEST_AMQP_URL} (${(err as Error).message}); start it with: ` +
        'rabbitmq-server -detached (or scripts/setup.sh)',
      { cause: err },
    );
  }
  return t;
}

export async function dropTopology(t: Topology): Promise<void> {
  const conn = await connectAmqp(TEST_AMQP_URL, `test-teardown-${t.queue}`);
  try {
    await deleteTopology(await conn.createChannel(), t);
  } finally {
    await conn.close();
  }
}

/** Messages ready in a queue; 0 while it does not exist yet. */
export const queueDepth = (queue: string): Promise<number> => winsQueueDepth(TEST_AMQP_URL, queue)();

/** Closes, broker-side, every RabbitMQ connection with this connection_name; returns how many. */
export async function closeRabbitConnections(connectionName: string): Promise<number> {
  const { stdout } = await run('rabbitmqctl', [
    '-q',
    'list_connections',
    'pid',
    'client_properties',
    '--no-table-headers',
  ]);
  const pids = stdout
    .split('\n')
    .filter((line) => line.includes(`{"connection_name","${connectionName}"}`))
    .map((line) => line.split('\t')[0] ?? '');
  for (const pid of pids) await run('rabbitmqctl', ['close_connection', pid, 'fault test']);
  return pids.length;
}

/** A running campaign of `count` packets written by grab-svc's own code. */
export async function makeCampaign(
  redis: RedisClient,
  pool: Pool | undefined,
  opts: { count: number; totalCents: number; expiresInMs?: number; subPools?: number },
): Promise<CampaignMeta> {
  registerScripts(redis);
  const now = Date.now();
  const valid = validateCreate(
    {
      name: 'pipeline test',
      totalCents: BigInt(opts.totalCents),
      packetCount: opts.count,
      split: Split.RANDOM,
      batches: 1,
      batchIntervalMs: 0n,
      startsAt: new Date(now - 1000),
      expiresAt: new Date(now + (opts.expiresInMs ?? 600_000)),
      ownerId: `owner-${uid()}`,
      eligibility: undefined,
      subPools: opts.subPools,
    },
    now,
  );
  const meta = { ...valid, id: `t${uid()}` };
  if (pool) {
    // Funded as CreateCampaign funds it: the owner's budget first, then row and escrow together.
    await depositBudget(pool, meta.ownerId, meta.totalCents);
    const { insertCampaignRow } = await import('@redpacket/grab-svc/settle');
    await insertCampaignRow(pool, meta);
  }
  await writeCampaign(redis, meta);
  return meta;
}

/**
 * Funds the escrow of each campaign these wins belong to with the sum of their amounts, from
 * external: for tests that publish wins of campaigns they never created (no row, no owner).
 */
export async function fundEscrows(pool: Pool, ws: WinEvent[]): Promise<void> {
  const sums = new Map<string, bigint>();
  for (const w of ws) if (w.amountCents > 0n) sums.set(w.campaignId, (sums.get(w.campaignId) ?? 0n) + w.amountCents);
  for (const [campaignId, cents] of sums) {
    await transfer(pool, {
      key: `test-escrow:${uid()}`,
      kind: 'deposit',
      from: EXTERNAL,
      to: accountId.escrow(campaignId),
      amountCents: cents,
    });
  }
}

/**
 * Invariant 8 after a settled campaign: its escrow holds 0 and the whole ledger audits
 * consistent. Returns the audit's problems (empty) so a failure prints them.
 */
export async function ledgerProblems(pool: Pool, campaignId: string): Promise<string[]> {
  const escrow = await balanceOf(pool, accountId.escrow(campaignId));
  const report = await audit(pool);
  return escrow === 0n ? report.problems : [`escrow:${campaignId} holds ${escrow} cents`, ...report.problems];
}

/** writeAwards of wins whose escrows fundEscrows funds first. */
export async function writeFundedAwards(pool: Pool, ws: WinEvent[]): Promise<number> {
  await fundEscrows(pool, ws);
  return writeAwards(pool, ws);
}

/** `n` different users grab, all at once; returns how many won. */
export async function grabMany(redis: RedisClient, campaignId: string, n: number, userPrefix = 'u'): Promise<number> {
  const replies = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      grabScript(redis, campaignId, `${userPrefix}${i}`, `r-${userPrefix}${i}`, undefined, ELIGIBLE),
    ),
  );
  return replies.filter((r) => r[0] === 1).length;
}

export async function awardCount(pool: Pool, campaignId: string): Promise<{ n: number; distinct: number }> {
  const [rows] = await pool.query<RowDataPacket[]>(
    'SELECT COUNT(*) AS n, COUNT(DISTINCT packet_id) AS d FROM awards WHERE campaign_id = ?',
    [campaignId],
  );
  return { n: Number(rows[0]?.['n']), distinct: Number(rows[0]?.['d']) };
}

/** Removes one campaign's keys and rows. */
export async function dropCampaign(redis: RedisClient, pool: Pool, campaignId: string): Promise<void> {
  await dropCampaignKeys(redis, campaignId);
  for (const table of ['awards', 'ledger', 'settlements', 'dead_letters', 'campaigns']) {
    await pool.query(`DELETE FROM ${table} WHERE campaign_id = ?`, [campaignId]);
  }
}

/**
 * A relay on its own Redis connection (to `redisUrl`, default the test Redis), for exactly these
 * campaigns, or for what the live index lists when `campaignIds` is undefined; `stop` ends it.
 */
export async function testRelay(
  t: Topology,
  campaignIds: string[] | undefined,
  extra: Partial<RelayOptions> = {},
  redisUrl?: string,
): Promise<{ relay: OutboxRelay; stop: () => Promise<void> }> {
  const own = await requireRedis(redisUrl);
  const relay = new OutboxRelay({
    redis: own,
    amqpUrl: TEST_AMQP_URL,
    topology: t,
    connectionName: `test-relay-${t.queue}`,
    log: silent,
    campaigns: campaignIds && (async () => campaignIds),
    batchSize: 200,
    maxBackoffMs: 500,
    ...extra,
  });
  relay.start();
  return {
    relay,
    stop: async () => {
      await relay.stop();
      own.disconnect();
    },
  };
}

/** A started gift consumer on the test topology (unthrottled unless told). */
export async function testGift(
  t: Topology,
  pool: Pool,
  extra: Partial<GiftConsumerOptions> = {},
): Promise<GiftConsumer> {
  const gift = new GiftConsumer({
    pool,
    amqpUrl: TEST_AMQP_URL,
    topology: t,
    connectionName: `test-gift-${t.queue}`,
    log: silent,
    rate: 0,
    maxBackoffMs: 500,
    ...extra,
  });
  await gift.start();
  return gift;
}

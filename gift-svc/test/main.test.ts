/**
 * gift-svc's real main: health follows MySQL and RabbitMQ (the consumer's connection), and its
 * /metrics, parsed, count the wins it really credits.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { credentials, makeGenericClientConstructor } from '@grpc/grpc-js';
import type { Pool } from '@redpacket/db';
import {
  parsePrometheusText,
  pollUntil,
  sampleSum,
  TEST_AMQP_URL,
  testSigner,
  TEST_MYSQL_URL,
  TEST_REDIS_URL,
} from '@redpacket/lib/testing';
import { freePort, spawnNode } from '@redpacket/loadgen';
import { assertTopology, connectAmqp, encodeWin, type Topology } from '@redpacket/wins';
import { service as healthService } from 'grpc-health-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  awardCount,
  closeRabbitConnections,
  dropTopology,
  fundEscrows,
  requireMysql,
  requireTopology,
  uid,
} from './harness.js';

const run = promisify(execFile);
const mainScript = new URL('../dist/main.js', import.meta.url);
const rabbitmqctl = (...args: string[]) => run('rabbitmqctl', ['-q', ...args]);

let pool: Pool;
let t: Topology;
/** A RabbitMQ user of this test's own, allowed this topology only: taking its rights away is an outage. */
const user = `gift-health-${uid()}`;
const password = uid();

beforeAll(async () => {
  pool = await requireMysql(2);
  t = await requireTopology();
  await rabbitmqctl('add_user', user, password);
});

afterAll(async () => {
  await rabbitmqctl('delete_user', user).catch(() => undefined);
  await dropTopology(t);
  await pool.end();
});

/** Rights on this test's names (and the default exchange, which requeues publish to). */
async function grant(): Promise<void> {
  const suffix = t.queue.slice(t.queue.lastIndexOf('.test-'));
  const mine = `^amq\\.default$|${suffix.replace(/[.]/g, '\\.')}$`;
  await rabbitmqctl('set_permissions', '-p', '/', user, mine, mine, mine);
}

it('is SERVING only while RabbitMQ answers too, and /metrics counts what it credits', async () => {
  await grant();
  const [port, metricsPort] = [await freePort(), await freePort()];
  const connectionName = `gift-health-${uid()}`;
  const amqp = new URL(TEST_AMQP_URL);
  amqp.username = user;
  amqp.password = password;
  const child = spawnNode(mainScript, [], {
    GRPC_PORT: String(port),
    METRICS_PORT: String(metricsPort),
    ...testSigner().env,
    MYSQL_URL: TEST_MYSQL_URL,
    REDIS_URL: TEST_REDIS_URL,
    AMQP_URL: amqp.toString(),
    WINS_TOPOLOGY_SUFFIX: t.queue.slice(t.queue.lastIndexOf('.test-') + 1),
    AMQP_CONNECTION_NAME: connectionName,
    LOG_LEVEL: 'info',
  });
  const Health = makeGenericClientConstructor(healthService, 'Health');
  const client = new Health(`127.0.0.1:${port}`, credentials.createInsecure()) as unknown as {
    check: (r: object, cb: (e: Error | null, r: { status: string }) => void) => void;
    close(): void;
  };
  const health = (): Promise<string> =>
    new Promise((resolve, reject) =>
      client.check({ service: 'redpacket.v1.GiftService' }, (e, r) => (e ? reject(e) : resolve(r.status))),
    );
  const scrape = async () => parsePrometheusText(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text());
  const campaign = `g${uid()}`;
  try {
    await child.waitFor(/gRPC server listening/, 30_000);
    await pollUntil('SERVING with MySQL and RabbitMQ up', async () => (await health()) === 'SERVING', 15_000);

    // real deliveries: /metrics (parsed strictly) counts them
    const wins = Array.from({ length: 20 }, (_, i) => ({
      campaignId: campaign,
      packetId: `${campaign}p${i}`,
      userId: `u${i}`,
      amountCents: BigInt(1 + i),
      requestId: `r${i}`,
      wonAtMs: BigInt(Date.now()),
      streamId: `${i}-0`,
      traceId: `obs-${i}`,
    }));
    await fundEscrows(pool, wins);
    const conn = await connectAmqp(TEST_AMQP_URL, `test-publisher-${t.queue}`);
    try {
      const ch = await conn.createConfirmChannel();
      await assertTopology(ch, t);
      for (const w of wins) ch.publish(t.exchange, campaign, encodeWin(w), { persistent: true });
      await ch.waitForConfirms();
    } finally {
      await conn.close();
    }
    await pollUntil('20 credited', async () => (await awardCount(pool, campaign)).n === 20, 15_000, 50);
    const samples = await pollUntil('the delivered counter at 20', async () => {
      const s = await scrape();
      return sampleSum(s, 'redpacket_gift_delivered_total') === 20 && s;
    });
    expect(sampleSum(samples, 'redpacket_gift_received_total')).toBe(20);
    expect(sampleSum(samples, 'redpacket_gift_dead_lettered_total')).toBe(0);
    expect(sampleSum(samples, 'redpacket_gift_backlog_messages', { queue: t.queue })).toBe(0);
    expect(
      sampleSum(samples, 'redpacket_dependency_duration_seconds_count', { op: 'gift_write_awards' }),
    ).toBeGreaterThan(0);
    expect(samples.some((s) => s.name === 'redpacket_gift_backlog_messages')).toBe(true);

    // RabbitMQ away for this consumer: its rights taken and its connection closed, it cannot reconnect
    await rabbitmqctl('clear_permissions', '-p', '/', user);
    expect(await closeRabbitConnections(connectionName)).toBeGreaterThan(0);
    await pollUntil('NOT_SERVING without RabbitMQ', async () => (await health()) === 'NOT_SERVING', 15_000, 100);
    // the queue is still there: nothing lost, the backlog is simply not known while away
    expect((await scrape()).some((s) => s.name === 'redpacket_gift_backlog_messages')).toBe(false);

    await grant();
    await pollUntil('SERVING once RabbitMQ is back', async () => (await health()) === 'SERVING', 20_000, 100);
    const after = await scrape();
    expect(sampleSum(after, 'redpacket_gift_reconnects_total')).toBeGreaterThanOrEqual(2);
  } finally {
    client.close();
    await child.stop();
    for (const table of ['awards', 'ledger'])
      await pool.query(`DELETE FROM ${table} WHERE campaign_id = ?`, [campaign]);
  }
});

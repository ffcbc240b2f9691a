/**
 * The wins queues are quorum queues on the real RabbitMQ, and a classic queue left by an earlier
 * version is refused with the fix named, then migrated only once it is empty and unused.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import type { ChannelModel } from 'amqplib';
import { pollUntil, TEST_AMQP_URL } from '@redpacket/lib/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  assertTopology,
  connectAmqp,
  deleteTopology,
  migrateToQuorum,
  QueueMismatchError,
  topologyWithSuffix,
  type Topology,
} from '../src/index.js';

const run = promisify(execFile);
let conn: ChannelModel;
const topologies: Topology[] = [];

beforeAll(async () => {
  try {
    conn = await connectAmqp(TEST_AMQP_URL, 'test-wins-quorum');
  } catch (err) {
    throw new Error(
      `RabbitMQ is not reachable at ${TEST_AMQP_URL} (${(err as Error).message}); start it with: ` +
        'rabbitmq-server -detached (or scripts/setup.sh)',
      { cause: err },
    );
  }
});

afterAll(async () => {
  for (const t of topologies) {
    const ch = await conn.createChannel();
    await deleteTopology(ch, t);
    await ch.close();
  }
  await conn?.close();
});

const topology = (): Topology => {
  const t = topologyWithSuffix(`scale-${randomBytes(5).toString('hex')}`);
  topologies.push(t);
  return t;
};

/** Type and arguments of a queue, as the broker reports them. */
async function describeQueue(name: string): Promise<{ type: string; args: string } | undefined> {
  const { stdout } = await run('rabbitmqctl', ['-q', 'list_queues', 'name', 'type', 'arguments', '--no-table-headers']);
  const line = stdout.split('\n').find((l) => l.split('\t')[0] === name);
  if (!line) return undefined;
  const [, type = '', args = ''] = line.split('\t');
  return { type, args };
}

async function depth(queue: string): Promise<number> {
  const ch = await conn.createChannel();
  const { messageCount } = await ch.checkQueue(queue);
  await ch.close();
  return messageCount;
}

it('declares the wins queue and its dead-letter queue as quorum queues, dead-lettering at least once', async () => {
  const t = topology();
  const ch = await conn.createChannel();
  await assertTopology(ch, t);
  await assertTopology(ch, t); // idempotent
  await ch.close();
  const wins = await describeQueue(t.queue);
  expect(wins?.type).toBe('quorum');
  expect(wins?.args).toContain('"x-dead-letter-strategy","at-least-once"');
  expect(wins?.args).toContain('"x-overflow","reject-publish"');
  expect(wins?.args).toContain(`"x-dead-letter-exchange","${t.deadExchange}"`);
  expect((await describeQueue(t.deadQueue))?.type).toBe('quorum');

  // A rejected message reaches the dead-letter queue through the quorum queue's dead-lettering.
  const pub = await conn.createConfirmChannel();
  pub.publish(t.exchange, 'c1', Buffer.from('poison'), { persistent: true });
  await pub.waitForConfirms();
  const msg = await pollUntil('the message', async () => (await pub.get(t.queue, { noAck: false })) || undefined);
  pub.nack(msg, false, false);
  await pollUntil('dead-lettered', async () => (await depth(t.deadQueue)) === 1);
  expect(await depth(t.queue)).toBe(0);
  await pub.close();
});

it('refuses a classic queue left by an earlier version, naming the fix; migrates it only once empty', async () => {
  const t = topology();
  // What an earlier version declared: classic queues.
  let ch = await conn.createChannel();
  await ch.assertExchange(t.exchange, 'topic', { durable: true });
  await ch.assertExchange(t.deadExchange, 'fanout', { durable: true });
  await ch.assertQueue(t.deadQueue, { durable: true });
  await ch.assertQueue(t.queue, { durable: true, deadLetterExchange: t.deadExchange });
  await ch.bindQueue(t.queue, t.exchange, '#');
  ch.sendToQueue(t.queue, Buffer.from('a win still queued'), { persistent: true });
  await ch.close();
  expect((await describeQueue(t.queue))?.type).toBe('classic');

  ch = await conn.createChannel();
  ch.on('error', () => undefined);
  const err = await assertTopology(ch, t).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(QueueMismatchError);
  expect((err as Error).message).toMatch(/exists with other arguments.*npm run migrate-queues -w @redpacket\/wins/);

  // Not empty: left alone, the message still there.
  const refused = await migrateToQuorum(conn, t);
  expect(refused).toEqual([
    {
      queue: t.queue,
      state: 'refused',
      reason: expect.stringMatching(/^1 message\(s\) and 0 consumer\(s\)/) as string,
    },
    { queue: t.deadQueue, state: 'refused', reason: `waits for ${t.queue} (nothing was changed)` },
  ]);
  expect((await describeQueue(t.queue))?.type).toBe('classic');
  expect((await describeQueue(t.deadQueue))?.type).toBe('classic');
  expect(await depth(t.queue)).toBe(1);

  // Drained (as the earlier gift-svc would), it is migrated, bound again and takes wins.
  ch = await conn.createChannel();
  const msg = await ch.get(t.queue, { noAck: false });
  expect(msg && msg.content.toString()).toBe('a win still queued');
  if (msg) ch.ack(msg);
  await ch.close();
  expect(await migrateToQuorum(conn, t)).toEqual([
    { queue: t.queue, state: 'migrated' },
    { queue: t.deadQueue, state: 'migrated' },
  ]);
  expect((await describeQueue(t.queue))?.type).toBe('quorum');
  expect((await describeQueue(t.deadQueue))?.type).toBe('quorum');
  const pub = await conn.createConfirmChannel();
  pub.publish(t.exchange, 'c1', Buffer.from('next win'), { persistent: true, mandatory: true });
  await pub.waitForConfirms();
  await pub.close();
  expect(await depth(t.queue)).toBe(1);

  // The operator's command says so, exit code 0.
  const { stdout } = await run(process.execPath, [new URL('../dist/migrate-main.js', import.meta.url).pathname], {
    env: { ...process.env, AMQP_URL: TEST_AMQP_URL, WINS_TOPOLOGY_SUFFIX: t.queue.slice('gift.wins.'.length) },
  });
  expect(stdout).toContain(`${t.queue}: is a quorum queue already`);
});

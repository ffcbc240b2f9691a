/**
 * Moving a topology's classic queues (left by a version before the quorum queues) over to quorum
 * queues, without ever dropping a message: a queue is deleted only while the broker itself sees
 * it empty and without consumers, then declared again as a quorum queue.
 */
import type { Channel, ChannelModel } from 'amqplib';
import { assertTopology, QUORUM, winsQueueArguments, type Topology } from './topology.js';

export type QueueMigration =
  /** Not there yet: assertTopology creates it as a quorum queue. */
  | { queue: string; state: 'absent' }
  /** Declared with this version's arguments already. */
  | { queue: string; state: 'current' }
  /** Was empty and unused with other arguments: deleted and declared again. */
  | { queue: string; state: 'migrated' }
  /** Still holds messages or consumers: left alone; `reason` says what to do first. */
  | { queue: string; state: 'refused'; reason: string };

/** A channel whose 404/406 closes are answered by the calls themselves, not thrown as events. */
async function quietChannel(conn: ChannelModel): Promise<Channel> {
  const ch = await conn.createChannel();
  ch.on('error', () => undefined);
  return ch;
}

const code = (err: unknown): number | undefined => (err as { code?: number }).code;

type Inspection = 'absent' | 'current' | { messages: number; consumers: number };

/** Whether a queue exists, with these arguments or others (then with how much on it). */
async function inspect(conn: ChannelModel, queue: string, args: Record<string, unknown>): Promise<Inspection> {
  let ch = await quietChannel(conn);
  try {
    await ch.checkQueue(queue);
  } catch (err) {
    if (code(err) === 404) return 'absent';
    throw err;
  }
  ch = await quietChannel(conn);
  try {
    // Declaring with identical arguments changes nothing; other arguments fail with 406.
    await ch.assertQueue(queue, { durable: true, arguments: args });
    await ch.close();
    return 'current';
  } catch (err) {
    if (code(err) !== 406) throw err;
  }
  ch = await quietChannel(conn);
  const { messageCount, consumerCount } = await ch.checkQueue(queue);
  await ch.close();
  return { messages: messageCount, consumers: consumerCount };
}

/**
 * Migrates both queues of a topology, or neither: while one still holds messages or consumers
 * nothing is touched (an empty dead-letter queue deleted beside a busy wins queue would leave the
 * latter's dead letters without a queue). The wins queue goes first, each queue is declared and
 * bound again right after its delete, and the topology is declared at the end.
 *
 * A win the relay publishes while the wins queue is briefly gone is returned as unroutable (it
 * publishes with `mandatory`) and stays in the outbox until it is published again: not lost.
 */
export async function migrateToQuorum(conn: ChannelModel, t: Topology): Promise<QueueMigration[]> {
  const queues = [
    { queue: t.queue, args: winsQueueArguments(t), exchange: t.exchange, type: 'topic', pattern: '#' },
    { queue: t.deadQueue, args: { ...QUORUM }, exchange: t.deadExchange, type: 'fanout', pattern: '' },
  ];
  const found = await Promise.all(queues.map((q) => inspect(conn, q.queue, q.args)));
  const busy = queues.filter((_, i) => {
    const f = found[i];
    return typeof f === 'object' && (f.messages > 0 || f.consumers > 0);
  });
  if (busy.length > 0) {
    return queues.map((q, i) => {
      const f = found[i] as Inspection;
      if (typeof f === 'string') return { queue: q.queue, state: f };
      const reason =
        f.messages > 0 || f.consumers > 0
          ? `${f.messages} message(s) and ${f.consumers} consumer(s) on it: let the gift-svc of the earlier ` +
            'version drain it, stop it, then run this again (nothing was changed)'
          : `waits for ${busy.map((b) => b.queue).join(', ')} (nothing was changed)`;
      return { queue: q.queue, state: 'refused', reason };
    });
  }
  const results: QueueMigration[] = [];
  let stopped = false;
  for (const [i, q] of queues.entries()) {
    const f = found[i] as Inspection;
    if (typeof f === 'string') {
      results.push({ queue: q.queue, state: f });
      continue;
    }
    if (stopped) {
      results.push({ queue: q.queue, state: 'refused', reason: 'an earlier queue could not be migrated' });
      continue;
    }
    const ch = await quietChannel(conn);
    try {
      // The broker checks both conditions atomically with the delete: a message or consumer that
      // arrived since the inspection makes it fail, and nothing is lost.
      await ch.deleteQueue(q.queue, { ifEmpty: true, ifUnused: true });
    } catch (err) {
      if (code(err) !== 406) throw err;
      stopped = true;
      results.push({
        queue: q.queue,
        state: 'refused',
        reason: 'a message or consumer arrived meanwhile; run this again',
      });
      continue;
    }
    const decl = await conn.createChannel();
    await decl.assertExchange(q.exchange, q.type, { durable: true });
    await decl.assertQueue(q.queue, { durable: true, arguments: q.args });
    await decl.bindQueue(q.queue, q.exchange, q.pattern);
    await decl.close();
    results.push({ queue: q.queue, state: 'migrated' });
  }
  if (!stopped) {
    const ch = await conn.createChannel();
    await assertTopology(ch, t);
    await ch.close();
  }
  return results;
}

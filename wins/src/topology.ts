/**
 * The RabbitMQ topology of the wins: declared identically by the relay and by gift-svc, so
 * whichever starts first creates it.
 */
import type { Channel } from 'amqplib';

/** Names of the exchanges and queues; tests and benchmarks use their own. */
export interface Topology {
  /** Durable topic exchange the relay publishes to; routing key = campaign id. */
  exchange: string;
  /** gift-svc's durable queue, bound to the exchange with "#". */
  queue: string;
  /** Dead-letter exchange (fanout) and its queue: poison and over-retried wins. */
  deadExchange: string;
  deadQueue: string;
}

export const DEFAULT_TOPOLOGY: Topology = {
  exchange: 'redpacket.wins',
  queue: 'gift.wins',
  deadExchange: 'redpacket.wins.dead',
  deadQueue: 'gift.wins.dead',
};

/** Topology names with a common suffix: how tests and benchmarks stay apart. */
export function topologyWithSuffix(suffix: string): Topology {
  return {
    exchange: `${DEFAULT_TOPOLOGY.exchange}.${suffix}`,
    queue: `${DEFAULT_TOPOLOGY.queue}.${suffix}`,
    deadExchange: `${DEFAULT_TOPOLOGY.deadExchange}.${suffix}`,
    deadQueue: `${DEFAULT_TOPOLOGY.deadQueue}.${suffix}`,
  };
}

/**
 * Both queues are quorum queues: replicated over the RabbitMQ cluster's nodes (a single node
 * here), durable, confirmed by a majority before the relay gets its confirm.
 *
 * Dead-lettering is at-least-once (a message leaves the wins queue only once the dead-letter
 * queue has it), which RabbitMQ allows only with `x-overflow: reject-publish`: a full queue
 * refuses a publish (the relay keeps the entry and retries) instead of dropping the oldest.
 *
 * Poison messages are still gift-svc's call (x-redpacket-attempts counts the failures of the
 * message itself and records the dead letter in MySQL). The broker's delivery limit counts every
 * return, a consumer crash or a lost connection too, so it is only a backstop for a message that
 * kills its consumer each time, set explicitly because RabbitMQ 4 defaults it to 20.
 */
export const WINS_QUEUE_DELIVERY_LIMIT = 100;

export const QUORUM = { 'x-queue-type': 'quorum' } as const;

/** The arguments the wins queue is declared with (a queue declared otherwise is refused). */
export function winsQueueArguments(t: Topology): Record<string, unknown> {
  return {
    ...QUORUM,
    'x-dead-letter-exchange': t.deadExchange,
    'x-dead-letter-strategy': 'at-least-once',
    'x-overflow': 'reject-publish',
    'x-delivery-limit': WINS_QUEUE_DELIVERY_LIMIT,
  };
}

/** A queue exists under the topology's name with other arguments: a classic queue, typically. */
export class QueueMismatchError extends Error {
  constructor(
    readonly queue: string,
    cause: Error,
  ) {
    super(
      `RabbitMQ queue "${queue}" exists with other arguments than this version declares (${cause.message}). ` +
        'The wins queues are quorum queues now; a classic queue left by an earlier version is moved over by ' +
        '`npm run migrate-queues -w @redpacket/wins` (same AMQP_URL and WINS_TOPOLOGY_SUFFIX as the services), ' +
        'which deletes it only while it is empty and unused, and re-declares it as a quorum queue.',
      { cause },
    );
  }
}

const isPreconditionFailed = (err: unknown): boolean => (err as { code?: number }).code === 406;

/**
 * Declares exchanges, queues and bindings (idempotent). The relay declares the queue too:
 * a win published before any gift-svc ever started must not be dropped as unroutable.
 * A queue that exists with other arguments (PRECONDITION_FAILED, which also closes the
 * channel) is reported as a QueueMismatchError saying how to migrate it.
 */
export async function assertTopology(ch: Channel, t: Topology): Promise<void> {
  const queue = async (name: string, args: Record<string, unknown>): Promise<void> => {
    try {
      await ch.assertQueue(name, { durable: true, arguments: args });
    } catch (err) {
      throw isPreconditionFailed(err) ? new QueueMismatchError(name, err as Error) : err;
    }
  };
  await ch.assertExchange(t.exchange, 'topic', { durable: true });
  await ch.assertExchange(t.deadExchange, 'fanout', { durable: true });
  await queue(t.deadQueue, { ...QUORUM });
  await ch.bindQueue(t.deadQueue, t.deadExchange, '');
  await queue(t.queue, winsQueueArguments(t));
  await ch.bindQueue(t.queue, t.exchange, '#');
}

/** Removes a topology (tests and benchmarks only). */
export async function deleteTopology(ch: Channel, t: Topology): Promise<void> {
  await ch.deleteQueue(t.queue);
  await ch.deleteQueue(t.deadQueue);
  await ch.deleteExchange(t.exchange);
  await ch.deleteExchange(t.deadExchange);
}

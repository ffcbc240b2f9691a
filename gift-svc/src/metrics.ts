/** gift-svc's delivery metrics; the queue's backlog is asked of the broker at scrape time. */
import { Counter, Gauge } from 'prom-client';
import { registry, shared } from '@redpacket/lib';

const counter = (name: string, help: string): Counter =>
  new Counter({ name: `redpacket_gift_${name}_total`, help, registers: [registry] });

export const giftMetrics = shared('redpacket_gift_*_total', () => ({
  received: counter('received', 'Win deliveries taken from RabbitMQ (redeliveries included)'),
  delivered: counter('delivered', 'Wins credited into MySQL for the first time (the commit happened)'),
  duplicates: counter('duplicates', 'Deliveries of wins already credited, which changed nothing'),
  retries: counter('retries', 'Wins whose write failed for a reason of their own, requeued to try again'),
  deadLettered: counter('dead_lettered', 'Wins parked in the dead-letter queue (undecodable, or failed every attempt)'),
  batches: counter('batches', 'Award transactions committed'),
  reconnects: counter('reconnects', 'Times the consumer (re)connected to RabbitMQ'),
}));

/** What the backlog gauges ask of each running consumer. */
export interface BacklogSource {
  /** Messages ready in the gift queue (the broker's count), or undefined when not connected. */
  queueDepth(): Promise<{ queue: string; ready: number } | undefined>;
  /** Deliveries this consumer holds unacked (buffered or being written). */
  readonly unacked: number;
}

const sources = shared('redpacket_gift_backlog:sources', () => new Set<BacklogSource>());
const COLLECT_TIMEOUT_MS = 1000;

/** Reports the consumer's backlog while it runs; removed by the returned function. */
export function watchBacklog(source: BacklogSource): () => void {
  sources.add(source);
  return () => sources.delete(source);
}

export const giftBacklog = shared(
  'redpacket_gift_backlog_messages',
  () =>
    new Gauge({
      name: 'redpacket_gift_backlog_messages',
      // WORKERS > 1: every worker reads the same number; the primary's sum would multiply it
      aggregator: 'max',
      help: 'Wins waiting in the gift queue (ready, not yet delivered to a consumer), by queue, at scrape time',
      labelNames: ['queue'] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const s of sources) {
          let timer: NodeJS.Timeout | undefined;
          const late = new Promise<undefined>((resolve) => {
            timer = setTimeout(() => resolve(undefined), COLLECT_TIMEOUT_MS);
          });
          // No answer (broker away): the series is left out rather than reporting a stale number.
          const depth = await Promise.race([s.queueDepth().catch(() => undefined), late]).finally(() =>
            clearTimeout(timer),
          );
          if (depth) this.set({ queue: depth.queue }, depth.ready);
        }
      },
    }),
);

export const giftUnacked = shared(
  'redpacket_gift_unacked_messages',
  () =>
    new Gauge({
      name: 'redpacket_gift_unacked_messages',
      help: 'Deliveries this instance holds unacked: received, not yet written and acked',
      registers: [registry],
      collect() {
        let n = 0;
        for (const s of sources) n += s.unacked;
        this.set(n);
      },
    }),
);

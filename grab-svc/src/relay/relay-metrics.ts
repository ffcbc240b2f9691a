/** The outbox relay's metrics: wins published, their lag, and the outboxes' length (read at scrape). */
import { Counter, Gauge, Histogram } from 'prom-client';
import { registry, shared } from '@redpacket/lib';

export const relayPublished = shared(
  'redpacket_relay_published_total',
  () =>
    new Counter({
      name: 'redpacket_relay_published_total',
      help: 'Wins the relay published to RabbitMQ and the broker confirmed',
      registers: [registry],
    }),
);

export const relayFailures = shared(
  'redpacket_relay_failures_total',
  () =>
    new Counter({
      name: 'redpacket_relay_failures_total',
      help: 'Relay passes that failed (Redis or RabbitMQ); their entries stay pending and are published again',
      registers: [registry],
    }),
);

export const relayLag = shared(
  'redpacket_relay_lag_seconds',
  () =>
    new Histogram({
      name: 'redpacket_relay_lag_seconds',
      help: "Time from a win (its won_at_ms) to the broker's confirm of its message, one observation a win",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers: [registry],
    }),
);

export const relayLastLag = shared(
  'redpacket_relay_last_lag_seconds',
  () =>
    new Gauge({
      name: 'redpacket_relay_last_lag_seconds',
      // WORKERS > 1: every worker reads the same number; the primary's sum would multiply it
      aggregator: 'max',
      help: 'Lag (now - won_at_ms at the confirm) of the last win the relay published',
      registers: [registry],
    }),
);

/** What the outbox gauge asks of each running relay. */
export interface OutboxSource {
  /** Entries in each relayed campaign's outbox (sub-pools summed into their campaign). */
  outboxLengths(): Promise<Map<string, number>>;
}

const sources = shared('redpacket_outbox_length:sources', () => new Set<OutboxSource>());
/** A scrape never waits longer than this for Redis. */
const COLLECT_TIMEOUT_MS = 1000;

/** The relay's outboxes while it runs; removed by the returned function. */
export function watchOutboxes(source: OutboxSource): () => void {
  sources.add(source);
  return () => sources.delete(source);
}

export const outboxLength = shared(
  'redpacket_outbox_length',
  () =>
    new Gauge({
      name: 'redpacket_outbox_length',
      // WORKERS > 1: every worker reads the same number; the primary's sum would multiply it
      aggregator: 'max',
      help: 'Wins in a campaign outbox not yet confirmed by RabbitMQ (XLEN at scrape time), by campaign',
      labelNames: ['campaign'] as const,
      registers: [registry],
      async collect() {
        this.reset();
        const totals = new Map<string, number>();
        for (const s of sources) {
          let timer: NodeJS.Timeout | undefined;
          const late = new Promise<undefined>((resolve) => {
            timer = setTimeout(() => resolve(undefined), COLLECT_TIMEOUT_MS);
          });
          // Redis not answering: the series are left out (absent, not stale) rather than the scrape failing.
          const lengths = await Promise.race([s.outboxLengths().catch(() => undefined), late]).finally(() =>
            clearTimeout(timer),
          );
          for (const [c, n] of lengths ?? []) totals.set(c, (totals.get(c) ?? 0) + n);
        }
        for (const [campaign, n] of totals) this.set({ campaign }, n);
      },
    }),
);

/** `redpacket campaign watch ID`: a live view from GetCampaignStats (+ gift-svc's GetDeliveryStats). */
import { Command } from 'commander';
import logUpdate from 'log-update';
import pc from 'picocolors';
import type { CampaignStats, DeliveryStats } from '@redpacket/proto';
import { action, examples } from '../action.js';
import type { CliContext } from '../context.js';
import { keyValueTable, num, plain, stateName, yuan } from '../format.js';
import { asDuration, asInt } from '../parse.js';

/** [label, CampaignStats counter, Outcome name (the key in JSON)] */
const OUTCOMES = [
  ['won', 'wonCount', 'WON'],
  ['already', 'alreadyGrabbedCount', 'ALREADY_GRABBED'],
  ['sold out', 'soldOutCount', 'SOLD_OUT'],
  ['not started', 'notStartedCount', 'NOT_STARTED'],
  ['ended', 'endedCount', 'ENDED'],
  ['forbidden', 'forbiddenCount', 'FORBIDDEN'],
] as const;

export interface WatchFrame {
  stats: CampaignStats;
  /** undefined while gift-svc does not answer. */
  delivery: DeliveryStats | undefined;
  deliveryError: string | undefined;
  /** Grabs a second per outcome (by Outcome name) since the previous frame. */
  grabsPerSecond: Record<string, number>;
  deliveredPerSecond: number | undefined;
}

const perSecond = (now: bigint, before: bigint, ms: number): number =>
  ms > 0 ? Math.round((Number(now - before) * 1000) / ms) : 0;

export function nextFrame(
  stats: CampaignStats,
  delivery: DeliveryStats | undefined,
  deliveryError: string | undefined,
  prev: WatchFrame | undefined,
): WatchFrame {
  const ms = prev ? (stats.observedAt?.getTime() ?? 0) - (prev.stats.observedAt?.getTime() ?? 0) : 0;
  const grabsPerSecond = Object.fromEntries(
    OUTCOMES.map(([, k, name]) => [name, prev ? perSecond(stats[k], prev.stats[k], ms) : 0]),
  );
  const deliveredPerSecond =
    delivery && prev?.delivery ? perSecond(delivery.delivered, prev.delivery.delivered, ms) : undefined;
  return { stats, delivery, deliveryError, grabsPerSecond, deliveredPerSecond };
}

export function renderFrame(f: WatchFrame): string {
  const s = f.stats;
  const d = f.delivery;
  const na = pc.dim('n/a');
  const rows: [string, string][] = [
    ['campaign', `${s.campaignId}  ${pc.bold(stateName(s.state))}`],
    ['released', `${num(s.packetsReleased)} of ${num(s.packetsTotal)} packets`],
    ['claimed', `${pc.green(num(s.packetsClaimed))} packets, ${pc.green(yuan(s.amountClaimedCents))}`],
    ['remaining', `${num(s.packetsRemaining)} packets, ${yuan(s.amountRemainingCents)} of ${yuan(s.amountTotalCents)}`],
    ['grabs (total)', OUTCOMES.map(([label, k]) => `${label} ${num(s[k])}`).join('  ')],
    ['grabs / s', OUTCOMES.map(([label]) => `${label} ${num(f.grabsPerSecond[label] ?? 0)}`).join('  ')],
    ['outbox pending', num(s.outboxPending)],
    ['delivered', d ? `${num(d.delivered)} (${yuan(d.deliveredCents)})` : na],
    ['delivery backlog', d ? num(d.inFlight) : na],
    ['delivered / s', f.deliveredPerSecond !== undefined ? num(f.deliveredPerSecond) : na],
    ['dead letters', d ? (d.deadLettered > 0n ? pc.red(num(d.deadLettered)) : '0') : na],
  ];
  // the first clause says it all ("gift-svc is not reachable at ..."); the cause can be long
  if (f.deliveryError) rows.push(['gift-svc', pc.dim(f.deliveryError.split(/; | \(/)[0] ?? '')]);
  return `${keyValueTable(rows)}\n${pc.dim(`${s.observedAt?.toISOString() ?? ''}  Ctrl-C to leave`)}`;
}

async function watch(ctx: CliContext, id: string, o: { interval: number; count: number }): Promise<void> {
  const admin = ctx.admin();
  const gift = ctx.gift();
  // redraw in place only on a terminal with a size (a bare pty reports 0 rows: log-update would draw nothing)
  const live = process.stdout.isTTY && (process.stdout.rows ?? 0) > 0 && !ctx.json;
  let stopped = false;
  let wake: (() => void) | undefined;
  const stop = (): void => {
    stopped = true;
    wake?.();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  let prev: WatchFrame | undefined;
  let frames = 0;
  try {
    while (!stopped) {
      const started = Date.now();
      let stats: CampaignStats;
      try {
        stats = await admin.call(admin.client.getCampaignStats, { campaignId: id });
      } catch (err) {
        // the first frame must work; later a hiccup is shown and retried
        if (!prev) throw err;
        if (live) logUpdate(`${renderFrame(prev)}\n${pc.red((err as Error).message)}`);
        else process.stderr.write(`${(err as Error).message}\n`);
        await pause(o.interval);
        continue;
      }
      let delivery: DeliveryStats | undefined;
      let deliveryError: string | undefined;
      try {
        // a slow or hung gift-svc must not freeze the view: it gets at most one refresh period
        delivery = await gift.call(gift.client.getDeliveryStats, { campaignId: id }, Math.max(500, o.interval));
      } catch (err) {
        deliveryError = (err as Error).message;
      }
      const frame = nextFrame(stats, delivery, deliveryError, prev);
      prev = frame;
      frames++;
      if (ctx.json) {
        const { stats: st, delivery: dv, ...rest } = frame;
        process.stdout.write(`${JSON.stringify({ stats: plain(st), delivery: dv ? plain(dv) : null, ...rest })}\n`);
      } else if (live) logUpdate(renderFrame(frame));
      else process.stdout.write(`${renderFrame(frame)}\n`);
      if (o.count > 0 && frames >= o.count) break;
      await pause(Math.max(0, o.interval - (Date.now() - started)));
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    if (live) logUpdate.done();
  }
  if (stopped) process.stderr.write('stopped watching\n');

  function pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }
}

export function watchCommand(): Command {
  return examples(
    new Command('watch')
      .argument('<campaign-id>')
      .description('live view, refreshed every second: packets, money, grabs per outcome per second, delivery')
      .option('--interval <duration>', 'refresh period', asDuration('--interval'), 1000)
      .option('--count <n>', 'stop after n refreshes (0: until Ctrl-C)', asInt('--count', 0), 0)
      .action(action(watch)),
    ['redpacket campaign watch Xy3kQ9', 'redpacket --json campaign watch Xy3kQ9 --count 5   # one JSON line a refresh'],
  );
}

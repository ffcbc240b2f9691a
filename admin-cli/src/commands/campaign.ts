/** `redpacket campaign create|list|show|close|settle|reconcile|restore` (watch lives in watch.ts). */
import { Command, Option } from 'commander';
import {
  Split,
  type Campaign,
  type CampaignStats,
  type CreateCampaignRequest,
  type Reconciliation,
  type RestoreReport,
  type Settlement,
} from '@redpacket/proto';
import { action, examples } from '../action.js';
import type { CliContext } from '../context.js';
import { CliError, Exit, usageError } from '../errors.js';
import { keyValueTable, num, plain, stateName, table, when, yuan } from '../format.js';
import { asDuration, asInt, timeArg, yuanToCents } from '../parse.js';
import { watchCommand } from './watch.js';

interface CreateOptions {
  name: string;
  total?: string;
  totalCents?: string;
  packets: number;
  split: 'random' | 'equal';
  batches: number;
  interval: number;
  startsAt: string;
  expiresAt?: string;
  duration: number;
  owner: string;
  requirePreOpened?: boolean;
  maxRisk?: number;
  admissionPpm?: number;
}

export function createRequest(o: CreateOptions, nowMs = Date.now()): CreateCampaignRequest {
  if ((o.total === undefined) === (o.totalCents === undefined)) {
    throw usageError('give the amount once: --total <yuan> or --total-cents <cents>');
  }
  const totalCents = o.total !== undefined ? yuanToCents(o.total) : BigInt(o.totalCents!);
  const startsAt = timeArg(o.startsAt, '--starts-at', nowMs);
  const expiresAt = o.expiresAt
    ? timeArg(o.expiresAt, '--expires-at', nowMs)
    : new Date(startsAt.getTime() + (o.batches - 1) * o.interval + o.duration);
  return {
    name: o.name,
    totalCents,
    packetCount: o.packets,
    split: o.split === 'equal' ? Split.EQUAL : Split.RANDOM,
    batches: o.batches,
    batchIntervalMs: BigInt(o.interval),
    startsAt,
    expiresAt,
    ownerId: o.owner,
    eligibility:
      o.requirePreOpened || o.maxRisk !== undefined || o.admissionPpm !== undefined
        ? { requirePreOpened: o.requirePreOpened ?? false, maxRiskScore: o.maxRisk, admissionPpm: o.admissionPpm }
        : undefined,
  };
}

function campaignRows(c: Campaign): [string, string][] {
  const rows: [string, string][] = [
    ['campaign', c.campaignId],
    ['name', c.name],
    ['state', stateName(c.state)],
    ['total', `${yuan(c.totalCents)} in ${num(c.packetCount)} packets (${Split[c.split] ?? c.split})`],
    ['batches', `${c.batches}, ${num(c.batchIntervalMs)} ms apart`],
    ['starts / expires', `${when(c.startsAt)} / ${when(c.expiresAt)}`],
    ['owner', c.ownerId],
  ];
  const el = c.eligibility;
  if (el && (el.requirePreOpened || el.maxRiskScore !== undefined || el.admissionPpm !== undefined)) {
    rows.push([
      'eligibility',
      [
        el.requirePreOpened ? 'pre-opened accounts only' : '',
        el.maxRiskScore !== undefined ? `risk <= ${el.maxRiskScore}` : '',
        el.admissionPpm !== undefined ? `${el.admissionPpm} ppm admitted` : '',
      ]
        .filter(Boolean)
        .join(', '),
    ]);
  }
  if (c.closeReason) rows.push(['closed because', c.closeReason]);
  return rows;
}

export function statsRows(s: CampaignStats): [string, string][] {
  return [
    ['packets released', `${num(s.packetsReleased)} of ${num(s.packetsTotal)}`],
    ['packets claimed', num(s.packetsClaimed)],
    ['packets remaining', num(s.packetsRemaining)],
    ['amount claimed', `${yuan(s.amountClaimedCents)} of ${yuan(s.amountTotalCents)}`],
    ['amount remaining', yuan(s.amountRemainingCents)],
    [
      'grabs by outcome',
      `won ${num(s.wonCount)}, already ${num(s.alreadyGrabbedCount)}, sold out ${num(s.soldOutCount)}, ` +
        `not started ${num(s.notStartedCount)}, ended ${num(s.endedCount)}, forbidden ${num(s.forbiddenCount)}`,
    ],
    ['outbox pending', num(s.outboxPending)],
  ];
}

async function create(ctx: CliContext, o: CreateOptions): Promise<void> {
  const admin = ctx.admin();
  const c = await admin.call(admin.client.createCampaign, createRequest(o));
  ctx.print(plain(c), () => `created campaign ${c.campaignId}\n${keyValueTable(campaignRows(c))}`);
}

async function list(ctx: CliContext, o: { pageSize: number; pageToken: string; all?: boolean }): Promise<void> {
  const campaigns: Campaign[] = [];
  let token = o.pageToken;
  do {
    const pageToken = token;
    const page = await ctx.via('grab', (client) => client.listCampaigns({ pageSize: o.pageSize, pageToken }));
    campaigns.push(...page.campaigns);
    token = page.nextPageToken;
  } while (o.all && token);
  ctx.print({ campaigns: plain(campaigns), nextPageToken: token }, () => {
    if (campaigns.length === 0) return 'no campaigns';
    const rows = campaigns.map((c) => [
      c.campaignId,
      c.name,
      stateName(c.state),
      `${num(c.packetsClaimed)} / ${num(c.packetCount)}`,
      `${yuan(c.amountClaimedCents)} / ${yuan(c.totalCents)}`,
      when(c.startsAt),
      when(c.expiresAt),
    ]);
    const more = token ? `\nmore: --page-token ${token}` : '';
    return table(['id', 'name', 'state', 'claimed', 'amount claimed', 'starts', 'expires'], rows) + more;
  });
}

async function show(ctx: CliContext, id: string): Promise<void> {
  const [c, s] = await ctx.via('grab', (client) =>
    Promise.all([client.getCampaign({ campaignId: id }), client.getCampaignStats({ campaignId: id })]),
  );
  ctx.print({ campaign: plain(c), stats: plain(s) }, () =>
    keyValueTable([...campaignRows({ ...c, state: s.state }), ...statsRows(s)]),
  );
}

async function close(ctx: CliContext, id: string, o: { reason: string }): Promise<void> {
  const admin = ctx.admin();
  const c = await admin.call(admin.client.closeCampaign, { campaignId: id, reason: o.reason });
  ctx.print(plain(c), () => `closed campaign ${c.campaignId}\n${keyValueTable(campaignRows(c))}`);
}

export function settlementRows(s: Settlement): [string, string][] {
  return [
    ['campaign', s.campaignId],
    ['owner', s.ownerId],
    ['total', yuan(s.amountTotalCents)],
    ['awarded', `${yuan(s.amountAwardedCents)} in ${num(s.packetsAwarded)} packets`],
    ['refunded to owner', yuan(s.refundCents)],
    ['awarded + refund', yuan(s.amountAwardedCents + s.refundCents)],
    ['settled at', when(s.settledAt)],
    ['already settled', s.alreadySettled ? 'yes (nothing changed)' : 'no'],
  ];
}

async function settle(ctx: CliContext, id: string): Promise<void> {
  const admin = ctx.admin();
  const s = await admin.call(admin.client.settleCampaign, { campaignId: id });
  ctx.print(plain(s), () => keyValueTable(settlementRows(s)));
}

export function reconciliationRows(r: Reconciliation): [string, string][] {
  const rows: [string, string][] = [
    ['campaign', r.campaignId],
    ['consistent', r.consistent ? 'yes' : 'NO'],
    ['packets total', num(r.packetsTotal)],
    ['claimed (Redis) / delivered (MySQL)', `${num(r.packetsClaimedRedis)} / ${num(r.packetsDeliveredMysql)}`],
    ['remaining (Redis)', num(r.packetsRemainingRedis)],
    [
      'amount claimed (Redis) / delivered (MySQL)',
      `${yuan(r.amountClaimedRedisCents)} / ${yuan(r.amountDeliveredMysqlCents)}`,
    ],
    [
      'claimed + remaining / total',
      `${yuan(r.amountClaimedRedisCents + r.amountRemainingRedisCents)} / ${yuan(r.amountTotalCents)}`,
    ],
  ];
  const listed = (label: string, ids: string[]): void => {
    if (ids.length) rows.push([label, ids.slice(0, 20).join(', ') + (ids.length > 20 ? ` … (${ids.length})` : '')]);
  };
  if (r.packetsDeadLettered > 0) {
    rows.push(['parked as dead letters', `${num(r.packetsDeadLettered)} packets, ${yuan(r.amountDeadLetteredCents)}`]);
  }
  listed('dead-lettered (redpacket deadletters redrive)', r.deadLettered);
  if (r.packetsLost > 0)
    rows.push(['lost in a restore (refunded)', `${num(r.packetsLost)}, ${yuan(r.amountLostCents)}`]);
  listed('claimed in Redis, missing in MySQL', r.missingInMysql);
  listed('in MySQL, not claimed in Redis', r.unknownInMysql);
  listed('different on the two sides', r.mismatched);
  for (const d of r.differences) rows.push(['difference', d]);
  return rows;
}

async function reconcile(ctx: CliContext, id: string): Promise<void> {
  const admin = ctx.admin();
  const r = await admin.call(admin.client.reconcileCampaign, { campaignId: id });
  ctx.print(plain(r), () => keyValueTable(reconciliationRows(r)));
  if (!r.consistent) throw new CliError(`campaign ${id} is not consistent (see the differences)`, Exit.inconsistent);
}

export function restoreRows(r: RestoreReport): [string, string][] {
  const rows: [string, string][] = [
    ['campaign', r.campaignId],
    ['packets total', num(r.packetsTotal)],
    ['claims restored', `${num(r.claimsRestored)}, ${yuan(r.amountClaimedCents)}`],
    ['packets put back', `${num(r.packetsRemaining)}, ${yuan(r.amountRemainingCents)}`],
    ['wins lost (winner unknown)', `${num(r.lostWins.length)}, ${yuan(r.amountLostCents)}`],
    ['wins still queued', num(r.winsQueued)],
  ];
  for (const l of r.lostWins.slice(0, 20)) {
    rows.push(['lost', `${l.packetId} ${yuan(l.amountCents)} (batch ${l.batch}, pool ${l.pool})`]);
  }
  if (r.lostWins.length > 20) rows.push(['lost', `… ${num(r.lostWins.length - 20)} more (--json lists all)`]);
  for (const n of r.notes) rows.push(['note', n]);
  return rows;
}

async function restore(ctx: CliContext, id: string, o: { allowQueued?: boolean }): Promise<void> {
  const admin = ctx.admin();
  const r = await admin.call(admin.client.restoreCampaign, { campaignId: id, allowQueued: o.allowQueued ?? false });
  ctx.print(plain(r), () => `restored campaign ${r.campaignId} from MySQL\n${keyValueTable(restoreRows(r))}`);
}

export function campaignCommand(): Command {
  const cmd = examples(
    new Command('campaign').description('create, inspect, watch, close, settle and reconcile campaigns'),
    [
      'redpacket campaign create --name Gala --total 10000 --packets 10000 --batches 3 --interval 2s',
      'redpacket campaign watch <id>',
      'redpacket campaign create --help',
    ],
  );

  examples(
    cmd
      .command('create')
      .description('create a campaign: the total is split into packets now, released in batches from the start')
      .requiredOption('--name <name>', 'display name (1-128 characters)')
      .option('--total <yuan>', 'total amount in yuan, e.g. 10000 or 99.50')
      .option('--total-cents <cents>', 'total amount in cents (instead of --total)')
      .requiredOption('--packets <n>', 'number of packets', asInt('--packets', 1))
      .addOption(new Option('--split <mode>', 'how the total is split').choices(['random', 'equal']).default('random'))
      .option('--batches <n>', 'release the packets in this many batches', asInt('--batches', 1), 1)
      .option('--interval <duration>', 'time between batches (e.g. 2s)', asDuration('--interval'), 0)
      .option('--starts-at <time>', 'now, +30s or an ISO time', 'now')
      .option('--expires-at <time>', 'an ISO time or +1h from now (default: last batch + --duration)')
      .option('--duration <duration>', 'open this long after the last batch', asDuration('--duration'), 3_600_000)
      .option('--owner <user>', 'who is refunded the unclaimed remainder', 'ops')
      .option('--require-pre-opened', 'only accounts opened before the start may grab')
      .option('--max-risk <score>', 'accounts with a higher risk score never win', asInt('--max-risk', 0, 100))
      .option(
        '--admission-ppm <ppm>',
        'share of users let through, parts per million',
        asInt('--admission-ppm', 0, 1e6),
      )
      .action(action(create)),
    [
      'redpacket campaign create --name "Gala 2027" --total 10000 --packets 10000 --batches 3 --interval 2s',
      'redpacket campaign create --name "Team lunch" --total-cents 88800 --packets 8 --split equal --starts-at +10m',
      'redpacket --json campaign create --name test --total 1 --packets 10 | jq -r .campaignId',
    ],
  );

  examples(
    cmd
      .command('list')
      .description('list campaigns, newest first')
      .option('--page-size <n>', 'campaigns per page (1-500)', asInt('--page-size', 1, 500), 50)
      .option('--page-token <token>', 'continue from a previous page', '')
      .option('--all', 'fetch every page')
      .action(action(list)),
    ['redpacket campaign list', 'redpacket campaign list --all --json | jq ".campaigns[].campaignId"'],
  );

  examples(
    cmd.command('show').argument('<campaign-id>').description('a campaign and its live counters').action(action(show)),
    ['redpacket campaign show Xy3kQ9', 'redpacket --json campaign show Xy3kQ9 | jq .stats.packetsClaimed'],
  );

  cmd.addCommand(watchCommand());

  examples(
    cmd
      .command('close')
      .argument('<campaign-id>')
      .description('stop all grabs now; wins already made are still delivered')
      .option('--reason <text>', 'recorded with the campaign', 'closed by operator')
      .action(action(close)),
    ['redpacket campaign close Xy3kQ9 --reason "ended early"'],
  );

  examples(
    cmd
      .command('settle')
      .argument('<campaign-id>')
      .description('refund the unclaimed remainder to the owner, once (needs gift-svc to have delivered every win)')
      .action(action(settle)),
    ['redpacket campaign settle Xy3kQ9'],
  );

  examples(
    cmd
      .command('reconcile')
      .argument('<campaign-id>')
      .description('compare Redis claims, MySQL awards and the total; exit 7 when they differ')
      .action(action(reconcile)),
    ['redpacket campaign reconcile Xy3kQ9', 'redpacket --json campaign reconcile Xy3kQ9 | jq .differences'],
  );

  examples(
    cmd
      .command('restore')
      .argument('<campaign-id>')
      .description(
        'rebuild a campaign whose Redis state is lost from MySQL (refused while any of it is still in Redis, ' +
          "or while wins are queued: wait until gift-svc's backlog is 0)",
      )
      .option('--allow-queued', 'restore although wins are still queued for delivery')
      .action(action(restore)),
    ['redpacket campaign restore Xy3kQ9', 'redpacket --json campaign restore Xy3kQ9 | jq ".lostWins[].packetId"'],
  );
  return cmd;
}

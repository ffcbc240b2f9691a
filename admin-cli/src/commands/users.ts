/** `redpacket users import|show|block|unblock|code`, against account-svc. */
import { Command } from 'commander';
import { SingleBar, Presets } from 'cli-progress';
import type { Account } from '@redpacket/proto';
import { action, examples } from '../action.js';
import type { CliContext } from '../context.js';
import { keyValueTable, num, plain, when, yuan } from '../format.js';
import { asDuration, asInt } from '../parse.js';
import { fileSize, readUserBatches } from '../users-csv.js';
import { importUserBatches, type ImportResult } from '../users-import.js';

function accountRows(a: Account): [string, string][] {
  return [
    ['user', a.userId],
    ['name', a.displayName],
    ['blocked', a.blocked ? `yes, ${when(a.blockedAt)}${a.blockReason ? ` (${a.blockReason})` : ''}` : 'no'],
    ['risk score', String(a.riskScore)],
    // the ledger balance of user:<id>: awards in, redemptions and withdrawals out
    ['balance', yuan(a.balanceCents)],
    ['awards', num(a.awardsCount)],
    ['opened', when(a.createdAt)],
  ];
}

async function importUsers(ctx: CliContext, file: string, o: { batchSize: number }): Promise<void> {
  const total = fileSize(file);
  const bar = new SingleBar(
    { format: 'importing {bar} {percentage}% | {users} users sent | {eta_formatted} left', stream: process.stderr },
    Presets.shades_classic,
  );
  const showBar = process.stderr.isTTY && !ctx.json;
  if (showBar) bar.start(total, 0, { users: 0 });
  const t0 = performance.now();
  let result: ImportResult;
  try {
    result = await importUserBatches(ctx, readUserBatches(file, o.batchSize), {
      deadlineMs: 3_600_000,
      onBatch: (batch, sent) => {
        if (showBar) bar.update(batch.bytesRead, { users: num(sent) });
      },
    });
  } finally {
    if (showBar) bar.stop();
  }
  const { response, sent, rejected: localRejected } = result;
  const seconds = (performance.now() - t0) / 1000;
  const summary = {
    file,
    sent,
    ...(plain(response) as Record<string, unknown>),
    rejectedLocally: localRejected.length,
    localErrors: localRejected.slice(0, 20),
    seconds: Number(seconds.toFixed(2)),
    usersPerSecond: Math.round(sent / Math.max(seconds, 0.001)),
  };
  ctx.print(summary, () =>
    keyValueTable([
      ['file', file],
      ['sent', num(sent)],
      ['received by account-svc', num(response.received)],
      ['created', num(response.created)],
      ['duplicates', num(response.duplicates)],
      ['rejected by account-svc', num(response.rejected)],
      ['rejected before sending', num(localRejected.length)],
      ['time', `${seconds.toFixed(1)} s (${num(summary.usersPerSecond)} users/s)`],
      ...[...localRejected.slice(0, 10), ...response.errors.slice(0, 10)].map((e): [string, string] => ['problem', e]),
    ]),
  );
}

async function block(ctx: CliContext, user: string, o: { reason: string }): Promise<void> {
  const account = ctx.account();
  const a = await account.call(account.client.blockUser, { userId: user, reason: o.reason });
  ctx.print(plain(a), () => `blocked ${a.userId}\n${keyValueTable(accountRows(a))}`);
}

async function unblock(ctx: CliContext, user: string): Promise<void> {
  const account = ctx.account();
  const a = await account.call(account.client.unblockUser, { userId: user });
  ctx.print(plain(a), () => `unblocked ${a.userId}\n${keyValueTable(accountRows(a))}`);
}

async function show(ctx: CliContext, user: string): Promise<void> {
  const account = ctx.account();
  const a = await account.call(account.client.getAccount, { userId: user });
  ctx.print(plain(a), () => keyValueTable(accountRows(a)));
}

async function loginCode(ctx: CliContext, user: string, o: { ttl: number }): Promise<void> {
  const account = ctx.account();
  const ttlSeconds = Math.max(1, Math.round(o.ttl / 1000));
  const r = await account.call(account.client.issueLoginCode, { userId: user, ttlSeconds });
  const expiresAt = r.expiresAt?.toISOString();
  ctx.print({ userId: user, code: r.code, expiresAt }, () => r.code);
}

export function usersCommand(): Command {
  const cmd = examples(
    new Command('users').description('pre-open, inspect, block and unblock accounts, issue login codes (account-svc)'),
    ['redpacket users import crowd.csv', 'redpacket users block mallory --reason "scripted clicks"'],
  );
  examples(
    cmd
      .command('import')
      .argument('<file>', 'CSV with a header: user_id[,display_name][,password][,risk_score]')
      .description('pre-open accounts in bulk, streamed to account-svc, with a progress bar and a summary')
      .option('--batch-size <n>', 'users per streamed message', asInt('--batch-size', 1, 10_000), 500)
      .action(action(importUsers)),
    ['redpacket users import crowd.csv', 'redpacket --json users import crowd.csv | jq .created'],
  );
  examples(cmd.command('show').argument('<user-id>').description('one account').action(action(show)), [
    'redpacket users show alice',
  ]);
  examples(
    cmd
      .command('block')
      .argument('<user-id>')
      .description('block a user: every grab answers FORBIDDEN within a second')
      .option('--reason <text>', 'recorded with the block', 'blocked by operator')
      .action(action(block)),
    ['redpacket users block mallory --reason "scripted clicks"'],
  );
  examples(cmd.command('unblock').argument('<user-id>').description('lift a block').action(action(unblock)), [
    'redpacket users unblock mallory',
  ]);
  examples(
    cmd
      .command('code')
      .argument('<user-id>')
      .description(
        'a one-time login code (printed once, stored only hashed): IssueToken {user_id, login_code} accepts it once',
      )
      .option('--ttl <duration>', 'how long it is valid (at most 7d)', asDuration('--ttl'), 600_000)
      .action(action(loginCode)),
    ['redpacket users code kiosk-7 --ttl 1h', 'redpacket --json users code kiosk-7 | jq -r .code'],
  );
  return cmd;
}

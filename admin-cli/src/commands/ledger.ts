/** `redpacket ledger audit|deposit`: the books (account-svc's AuditLedger and Deposit). */
import { Command } from 'commander';
import { action, examples } from '../action.js';
import type { CliContext } from '../context.js';
import { CliError, Exit } from '../errors.js';
import { keyValueTable, num, plain, yuan } from '../format.js';
import { yuanToCents } from '../parse.js';

async function audit(ctx: CliContext): Promise<void> {
  const account = ctx.account();
  const r = await account.call(account.client.auditLedger, {});
  // Problems are printed whole, one a line (a table cell would wrap them), for grep and for the ticket.
  ctx.print(plain(r), () =>
    [
      keyValueTable([
        ['consistent', r.consistent ? 'yes' : 'NO'],
        ['accounts checked', num(r.accountsChecked)],
        ['transfers checked', num(r.transfersChecked)],
      ]),
      ...r.problems.map((p) => `problem: ${p}`),
    ].join('\n'),
  );
  if (!r.consistent) {
    throw new CliError(
      `the ledger is not consistent: ${r.problems.length} problem(s) (listed above)`,
      Exit.inconsistent,
    );
  }
}

async function deposit(
  ctx: CliContext,
  accountId: string,
  amount: string,
  o: { requestId: string; note?: string },
): Promise<void> {
  const account = ctx.account();
  const amountCents = yuanToCents(amount);
  const a = await account.call(account.client.deposit, {
    accountId,
    amountCents,
    requestId: o.requestId,
    note: o.note ?? '',
  });
  ctx.print(plain(a), () =>
    keyValueTable([
      ['account', a.accountId],
      ['deposited', yuan(amountCents)],
      ['balance', yuan(a.balanceCents)],
      ['request id', `${o.requestId} (the same id again moves nothing)`],
    ]),
  );
}

export function ledgerCommand(): Command {
  const cmd = examples(
    new Command('ledger').description('the books: prove they balance, and bring money in (account-svc)'),
    ['redpacket ledger audit', 'redpacket ledger deposit operator:spring-gala 100000 --request-id budget-2027'],
  );
  examples(
    cmd
      .command('audit')
      .description(
        'prove the books balance: every transfer balances, every balance equals its entries, no negative ' +
          'balance, settled escrows are 0, money inside = deposits - withdrawals; exit 7 with each problem when not',
      )
      .action(action(audit)),
    ['redpacket ledger audit', 'redpacket --json ledger audit | jq .problems'],
  );
  examples(
    cmd
      .command('deposit')
      .argument('<account>', 'user:<id>, merchant:<id> or operator:<budget>')
      .argument('<amount>', 'in yuan, e.g. 100000 or 99.50')
      .description('money entering the system from outside into an account (once per --request-id)')
      .requiredOption('--request-id <id>', 'makes a repeat harmless: the same id again moves nothing')
      .option('--note <text>', 'why the money came in')
      .action(action(deposit)),
    ['redpacket ledger deposit operator:spring-gala 100000 --request-id budget-2027 --note "2027 gala budget"'],
  );
  return cmd;
}

/** `redpacket deadletters list|redrive`: the wins gift-svc parked, and crediting them again. */
import { Command } from 'commander';
import type { DeadLetter, RedriveDeadLettersResponse } from '@redpacket/proto';
import { action, examples } from '../action.js';
import type { CliContext } from '../context.js';
import { CliError, Exit } from '../errors.js';
import { keyValueTable, num, plain, table, when, yuan } from '../format.js';

/** The command that re-drives the parked letters of `campaignId` (or of all). */
const redriveHint = (campaignId?: string): string =>
  `redpacket deadletters redrive${campaignId ? ` --campaign ${campaignId}` : ''}`;

const short = (s: string, n: number): string => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

async function list(ctx: CliContext, o: { campaign?: string; all?: boolean }): Promise<void> {
  const gift = ctx.gift();
  const letters: DeadLetter[] = [];
  let parked = 0n;
  let token = '';
  // Dead letters are few and an operator needs every one: all pages, always.
  do {
    const page = await gift.call(gift.client.listDeadLetters, {
      campaignId: o.campaign ?? '',
      pageSize: 500,
      pageToken: token,
      includeRedriven: o.all ?? false,
    });
    letters.push(...page.deadLetters);
    parked = page.parkedCount;
    token = page.nextPageToken;
  } while (token);
  ctx.print({ deadLetters: plain(letters), parkedCount: parked.toString() }, () => {
    const rows = letters.map((d) => [
      d.deadLetterId,
      d.campaignId || '?',
      d.packetId || '?',
      d.userId || '?',
      d.userId ? yuan(d.amountCents) : '?',
      String(d.attempts),
      when(d.deadLetteredAt),
      d.redrivenAt ? when(d.redrivenAt) : 'parked',
      short(d.reason, 60),
    ]);
    const head = ['id', 'campaign', 'packet', 'user', 'amount', 'attempts', 'dead-lettered', 're-driven', 'reason'];
    const summary =
      parked > 0n
        ? `${num(parked)} parked: credit them with \`${redriveHint(o.campaign)}\``
        : 'nothing parked: every dead letter has been re-driven';
    return letters.length ? `${table(head, rows)}\n${summary}` : summary;
  });
}

export function redriveRows(r: RedriveDeadLettersResponse): [string, string][] {
  const rows: [string, string][] = [
    ['re-driven', num(r.redriven)],
    ['of those, newly credited', num(r.credited)],
    ['still parked', num(r.failed)],
  ];
  for (const e of r.errors) rows.push(['error', e]);
  return rows;
}

async function redrive(ctx: CliContext, o: { campaign?: string; id?: string[] }): Promise<void> {
  const gift = ctx.gift();
  const r = await gift.call(gift.client.redriveDeadLetters, {
    campaignId: o.campaign ?? '',
    deadLetterIds: o.id ?? [],
  });
  ctx.print(plain(r), () => keyValueTable(redriveRows(r)));
  if (r.errors.length) {
    throw new CliError(`${r.errors.length} dead letter(s) not re-driven (see the errors)`, Exit.failure);
  }
}

export function deadLettersCommand(): Command {
  const cmd = examples(
    new Command('deadletters').description(
      'wins gift-svc could not credit (parked in MySQL, never dropped): list them and re-drive them',
    ),
    ['redpacket deadletters list --campaign Xy3kQ9', 'redpacket deadletters redrive --campaign Xy3kQ9'],
  );

  examples(
    cmd
      .command('list')
      .description('the parked dead letters (every page), oldest first, and how many are parked')
      .option('--campaign <id>', 'only this campaign (default: every campaign)')
      .option('--all', 'also the ones already re-driven')
      .action(action(list)),
    [
      'redpacket deadletters list',
      'redpacket deadletters list --campaign Xy3kQ9 --all',
      'redpacket --json deadletters list | jq .parkedCount',
    ],
  );

  examples(
    cmd
      .command('redrive')
      .description(
        'credit parked wins again through gift-svc (exactly once however often it runs); ' +
          'exit 1 when any stays parked or an --id is unknown',
      )
      .option('--campaign <id>', 'only this campaign (default: every campaign)')
      .option('--id <ids...>', 'only these dead letters (ids from `deadletters list`)')
      .action(action(redrive)),
    ['redpacket deadletters redrive --campaign Xy3kQ9', 'redpacket deadletters redrive --id 17 18'],
  );
  return cmd;
}

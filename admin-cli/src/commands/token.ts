/** `redpacket token USER`: a token for trying the API, signed here or issued by account-svc. */
import { Command } from 'commander';
import { action, examples } from '../action.js';
import type { CliContext } from '../context.js';
import { asDuration, asInt } from '../parse.js';
import { signUserTokens } from '../tokens.js';

interface TokenOptions {
  count?: number;
  ghzMetadata?: boolean;
  admin?: boolean;
  ttl: number;
  password?: string;
  loginCode?: string;
  openedAt?: boolean;
}

async function token(ctx: CliContext, user: string, o: TokenOptions): Promise<void> {
  const ttlSeconds = Math.max(1, Math.round(o.ttl / 1000));
  if (o.password !== undefined || o.loginCode !== undefined) {
    const account = ctx.account();
    const r = await account.call(account.client.issueToken, {
      userId: user,
      password: o.password ?? '',
      loginCode: o.loginCode ?? '',
      ttlSeconds,
    });
    ctx.print(
      {
        userId: user,
        token: r.token,
        tokenType: r.tokenType,
        expiresAt: r.expiresAt?.toISOString(),
        source: 'account-svc',
      },
      () => r.token,
    );
    return;
  }
  const role = o.admin ? 'admin' : 'user';
  if (o.count !== undefined) {
    // many users at once, e.g. for ghz's round-robin metadata file (-M)
    const tokens = await signUserTokens(ctx.signer, user, o.count, ttlSeconds);
    const text = o.ghzMetadata
      ? JSON.stringify(tokens.map((t) => ({ authorization: `Bearer ${t}` })))
      : ctx.json
        ? JSON.stringify(tokens.map((t, i) => ({ userId: `${user}${i}`, token: t })))
        : tokens.join('\n');
    process.stdout.write(`${text}\n`);
    return;
  }
  const t = await ctx.signer.sign({
    userId: user,
    role,
    ttlSeconds,
    // a signed demo user counts as opened an hour ago, so pre-opened-only campaigns accept it
    openedAtMs: o.openedAt ? Date.now() - 3_600_000 : undefined,
  });
  ctx.print(
    {
      userId: user,
      role,
      token: t,
      expiresAt: new Date(Date.now() + ttlSeconds * 1000).toISOString(),
      source: 'signed',
    },
    () => t,
  );
}

export function tokenCommand(): Command {
  return examples(
    new Command('token')
      .argument('<user-id>')
      .description(
        'print a bearer token for a user: signed with JWT_PRIVATE_KEY_FILE (--private-key), or issued by account-svc with --password or --login-code',
      )
      .option('--admin', 'add the claim "role": "admin"')
      .option('--ttl <duration>', 'lifetime', asDuration('--ttl'), 3_600_000)
      .option('--opened-at', 'add an opened_at claim an hour ago (for pre-opened-only campaigns)')
      .option('--password <password>', "ask account-svc's IssueToken instead of signing here")
      .option('--login-code <code>', 'ask IssueToken with a one-time code from `redpacket users code`')
      .option(
        '--count <n>',
        'sign tokens for n users named <user-id>0 .. <user-id>{n-1}',
        asInt('--count', 1, 1_000_000),
      )
      .option('--ghz-metadata', 'with --count: print a JSON array of {"authorization": ...} for ghz -M')
      .action(action(token)),
    [
      'redpacket token alice',
      'export REDPACKET_TOKEN=$(redpacket token ops --admin)',
      'redpacket token alice --password s3cret --json',
      'redpacket token kiosk-7 --login-code "$(redpacket users code kiosk-7)"',
      'redpacket token crowd- --count 10000 --ghz-metadata > tokens.json   # ghz -M tokens.json',
      'grpcurl -plaintext -H "authorization: Bearer $(redpacket token alice)" -d \'{"campaign_id":"Xy3kQ9"}\' 127.0.0.1:50051 redpacket.v1.GrabService/Grab',
    ],
  );
}

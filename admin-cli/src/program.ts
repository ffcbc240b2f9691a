/** The `redpacket` command tree; main.ts runs it with the process environment. */
import { Command, Option } from 'commander';
import { benchCommand } from './commands/bench.js';
import { campaignCommand } from './commands/campaign.js';
import { consoleCommand } from './commands/console.js';
import { deadLettersCommand } from './commands/dead-letters.js';
import { demoCommand } from './commands/demo.js';
import { ledgerCommand } from './commands/ledger.js';
import { switchCommand } from './commands/switch.js';
import { tokenCommand } from './commands/token.js';
import { keysCommand } from './commands/keys.js';
import { usersCommand } from './commands/users.js';
import type { CliEnv } from './context.js';
import { asDuration } from './parse.js';

export function buildProgram(env: CliEnv): Command {
  const program = new Command('redpacket')
    .description(
      "The red packet mesh's operator tool: campaigns, dead letters, users, tokens, switches, load tests and the demo.",
    )
    .version('0.1.0')
    .option('--grab-addr <host:port>', 'grab-svc (env GRAB_ADDR)', env.GRAB_ADDR ?? '127.0.0.1:50051')
    .option('--account-addr <host:port>', 'account-svc (env ACCOUNT_ADDR)', env.ACCOUNT_ADDR ?? '127.0.0.1:50052')
    .option('--gift-addr <host:port>', 'gift-svc (env GIFT_ADDR)', env.GIFT_ADDR ?? '127.0.0.1:50053')
    .addOption(
      new Option('--token <jwt>', 'admin bearer token (env REDPACKET_TOKEN)').default(
        env.REDPACKET_TOKEN || undefined,
        env.REDPACKET_TOKEN ? 'from REDPACKET_TOKEN' : undefined,
      ),
    )
    .addOption(
      new Option(
        '--private-key <file>',
        "signs tokens when no token is given: account-svc's EC P-256 key (env JWT_PRIVATE_KEY_FILE)",
      ).default(
        env.JWT_PRIVATE_KEY_FILE || undefined,
        env.JWT_PRIVATE_KEY_FILE ? 'from JWT_PRIVATE_KEY_FILE' : undefined,
      ),
    )
    .option('--issuer <iss>', 'iss of signed tokens (env JWT_ISSUER)', env.JWT_ISSUER || undefined)
    .option('--audience <aud>', 'aud of signed tokens (env JWT_AUDIENCE)', env.JWT_AUDIENCE || undefined)
    .option(
      '--tls-cert <file>',
      "mTLS: this client's certificate, PEM (env GRPC_TLS_CERT_FILE)",
      env.GRPC_TLS_CERT_FILE,
    )
    .option(
      '--tls-key <file>',
      "mTLS: the certificate's private key, PEM (env GRPC_TLS_KEY_FILE)",
      env.GRPC_TLS_KEY_FILE,
    )
    .option('--tls-ca <file>', "mTLS: the mesh's CA, PEM (env GRPC_TLS_CA_FILE)", env.GRPC_TLS_CA_FILE)
    .option('--json', 'print JSON for scripts instead of tables', false)
    .option('--timeout <duration>', 'deadline of each call', asDuration('--timeout'), 10_000)
    .addHelpText(
      'after',
      `
Exit codes: 0 ok, 1 failure, 2 bad usage or invalid request, 3 server down or unreachable,
4 not found, 5 not allowed (token missing, invalid or not admin), 6 not possible now
(e.g. settle before delivery), 7 reconcile found differences.

Examples:
  $ npm start                                   # the demo: a whole campaign end to end
  $ redpacket campaign create --name Gala --total 10000 --packets 10000 --batches 3 --interval 2s
  $ redpacket campaign watch <id>
  $ redpacket deadletters redrive --campaign <id> # credit the wins parked as dead letters
  $ redpacket switch set gift.paused on           # degrade switches: see redpacket switch --help
  $ redpacket bench --call redpacket.v1.GrabService.Grab -n 20000 -c 200 --token-per-user 20000 \\
      -d '{"campaign_id":"<id>","request_id":"r{{.RequestNumber}}"}' --baseline
`,
    );
  program.addCommand(campaignCommand());
  program.addCommand(deadLettersCommand());
  program.addCommand(ledgerCommand());
  program.addCommand(usersCommand());
  program.addCommand(tokenCommand());
  program.addCommand(keysCommand());
  program.addCommand(switchCommand(env));
  program.addCommand(consoleCommand(env));
  program.addCommand(benchCommand());
  program.addCommand(demoCommand(env));
  // addCommand does not pass settings down: every command throws instead of exiting, so
  // main.ts picks the exit code (2 for usage) in one place
  const inherit = (cmd: Command): void => {
    cmd.exitOverride().showHelpAfterError('(add --help for usage and examples)');
    cmd.commands.forEach(inherit);
  };
  inherit(program);
  return program;
}

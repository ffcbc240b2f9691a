/**
 * `redpacket demo` (root `npm start`): the main job. Applies migrations, starts every service
 * built in this checkout, runs a gala campaign end to end with a crowd of users, and prints a
 * report with the money check to the cent (the flow is in ../demo/run.ts).
 */
import { Command } from 'commander';
import { action, examples } from '../action.js';
import type { CliEnv } from '../context.js';
import { asDuration, asInt } from '../parse.js';
import { runDemo, type DemoOptions } from '../demo/run.js';

/** The demo command, its defaults from DEMO_PACKETS, DEMO_USERS and DEMO_TOTAL_YUAN. */
export function demoCommand(env: CliEnv): Command {
  return examples(
    new Command('demo')
      .description(
        'the main job (npm start): migrations, services, a gala campaign with a crowd, and the money check to the cent',
      )
      .option('--packets <n>', 'packets in the campaign', asInt('--packets', 1), Number(env.DEMO_PACKETS ?? 10_000))
      .option('--total <yuan>', 'campaign total in yuan', env.DEMO_TOTAL_YUAN ?? '10000')
      .option('--users <n>', 'users in the crowd', asInt('--users', 1, 1_000_000), Number(env.DEMO_USERS ?? 50_000))
      .option('--batches <n>', 'release batches', asInt('--batches', 1, 100), 3)
      .option('--interval <duration>', 'time between batches', asDuration('--interval'), 2000)
      .option('-c, --concurrency <n>', 'grabs in flight', asInt('-c', 1, 10_000), 200)
      .option('--connections <n>', 'HTTP/2 connections to grab-svc', asInt('--connections', 1, 64), 4)
      .option('--no-account', 'do not start account-svc even if it is built')
      .option('--no-gift', 'do not start gift-svc even if it is built')
      .option(
        '--delivery-timeout <duration>',
        'how long to wait for gift-svc',
        asDuration('--delivery-timeout'),
        90_000,
      )
      .option('--keep', "keep the demo campaign's Redis keys afterwards")
      .option('--console <host:port>', "where the operator's console listens (port 0: a free one)", '127.0.0.1:0')
      .option('--no-console', "do not start the operator's console")
      .option('--hold', 'keep everything running after the report until Ctrl-C')
      .action(action((ctx, o: DemoOptions) => runDemo(ctx, o, env))),
    [
      'npm start',
      'npm start -- --packets 500 --users 2000',
      'npm start -- --hold --console 127.0.0.1:8090',
      'redpacket demo --users 100000 --packets 20000 --json > report.json',
    ],
  );
}

/** Glue between commander and the commands: a context per run, closed afterwards. */
import type { Command } from 'commander';
import { CliContext, type GlobalOptions } from './context.js';

/**
 * Wraps a command body as a commander action: `fn(ctx, ...positionals, options)`. Errors
 * propagate to main.ts, which prints them and picks the exit code.
 */
export function action<A extends unknown[]>(
  fn: (ctx: CliContext, ...args: A) => Promise<void>,
): (...all: unknown[]) => Promise<void> {
  return async (...all: unknown[]) => {
    const cmd = all[all.length - 1] as Command;
    const ctx = new CliContext(cmd.optsWithGlobals<GlobalOptions>());
    try {
      await fn(ctx, ...(all.slice(0, -1) as A));
    } finally {
      ctx.close();
    }
  };
}

/** Appends an "Examples:" block to a command's --help. */
export function examples(cmd: Command, lines: string[]): Command {
  return cmd.addHelpText('after', `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`);
}

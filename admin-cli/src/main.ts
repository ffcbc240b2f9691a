/** `redpacket` entry point: parses the command line, runs it, and turns failures into exit codes. */
import { CommanderError } from 'commander';
import pc from 'picocolors';
import { CliError, Exit } from './errors.js';
import { buildProgram } from './program.js';

const env = Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined));
const program = buildProgram(env);

let code: number = Exit.ok;
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // commander printed the message (or the help) already
    code = err.exitCode === 0 ? Exit.ok : Exit.usage;
  } else if (err instanceof CliError) {
    process.stderr.write(`${pc.red('redpacket: error:')} ${err.message}\n`);
    code = err.exitCode;
  } else {
    process.stderr.write(`${pc.red('redpacket: unexpected error:')} ${(err as Error).stack ?? String(err)}\n`);
    code = Exit.failure;
  }
}
// grpc-js channels and worker threads may keep the loop alive; every result is written by now
process.exit(code);

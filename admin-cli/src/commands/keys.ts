/**
 * `redpacket keys generate|rotate|retire`: the ES256 key pairs tokens are signed with and the
 * JWKS every verifier reads. Rotation: `rotate` publishes a new key beside the current ones;
 * once every verifier has the new JWKS, account-svc's JWT_PRIVATE_KEY_FILE is switched to it;
 * when the old key's last tokens have expired, `retire` removes it. See docs/identity.md.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import {
  JWKS_FILE_NAME,
  PRIVATE_KEY_FILE_NAME,
  readJwksFile,
  withoutKey,
  writeJwksFile,
  writeKeyPair,
  type KeyFiles,
} from '@redpacket/lib';
import { action, examples } from '../action.js';
import type { CliContext } from '../context.js';
import { usageError } from '../errors.js';

/** Refuses to overwrite a private key: losing it would end every token it signed. */
function freshDir(dir: string): void {
  if (existsSync(join(dir, PRIVATE_KEY_FILE_NAME)))
    throw usageError(`${join(dir, PRIVATE_KEY_FILE_NAME)} exists; give another --out directory`);
}

function printKeys(ctx: CliContext, files: KeyFiles, kids: string[]): void {
  ctx.print({ ...files, kids }, () =>
    [
      `kid ${files.kid}`,
      `private key ${files.privateKeyFile} (account-svc's JWT_PRIVATE_KEY_FILE; keep it secret)`,
      `JWKS ${files.jwksFile} (every verifier's JWT_JWKS_FILE; keys: ${kids.join(', ')})`,
    ].join('\n'),
  );
}

async function generate(ctx: CliContext, o: { out: string }): Promise<void> {
  freshDir(o.out);
  const files = writeKeyPair(o.out);
  printKeys(ctx, files, [files.kid]);
}

async function rotate(ctx: CliContext, o: { jwks: string; out: string }): Promise<void> {
  freshDir(o.out);
  const current = readJwksFile(o.jwks);
  const files = writeKeyPair(o.out, current);
  // The input JWKS gets the new key too, so the file the verifiers read can be published as it is.
  const published = readJwksFile(files.jwksFile);
  writeJwksFile(o.jwks, published);
  printKeys(
    ctx,
    files,
    published.keys.map((k) => k.kid),
  );
}

async function retire(ctx: CliContext, o: { jwks: string; kid: string }): Promise<void> {
  let jwks;
  try {
    jwks = withoutKey(readJwksFile(o.jwks), o.kid);
  } catch (err) {
    throw usageError(`${o.jwks}: ${(err as Error).message}`);
  }
  writeJwksFile(o.jwks, jwks);
  const kids = jwks.keys.map((k) => k.kid);
  ctx.print({ jwksFile: o.jwks, retired: o.kid, kids }, () => `retired ${o.kid}; ${o.jwks} keys: ${kids.join(', ')}`);
}

export function keysCommand(): Command {
  const cmd = new Command('keys').description('ES256 signing keys and the JWKS of the verifiers');
  cmd.addCommand(
    new Command('generate')
      .description(`write a new EC P-256 key pair: ${PRIVATE_KEY_FILE_NAME} and ${JWKS_FILE_NAME}`)
      .requiredOption('--out <dir>', 'directory to write into (created if missing)')
      .action(action(generate)),
  );
  cmd.addCommand(
    new Command('rotate')
      .description('make a new key pair in --out and add its public key to the JWKS (both files)')
      .requiredOption('--jwks <file>', 'the JWKS the verifiers read now')
      .requiredOption('--out <dir>', 'directory for the new key pair')
      .action(action(rotate)),
  );
  cmd.addCommand(
    new Command('retire')
      .description('remove a key from the JWKS: its tokens fail once the verifiers reload it')
      .requiredOption('--jwks <file>', 'the JWKS to edit')
      .requiredOption('--kid <kid>', 'the key to remove')
      .action(action(retire)),
  );
  return examples(cmd, [
    'npx redpacket keys generate --out ./keys',
    'redpacket keys rotate --jwks ./keys/jwks.json --out ./keys-2026-12',
    'redpacket keys retire --jwks ./keys/jwks.json --kid <old kid>',
  ]);
}

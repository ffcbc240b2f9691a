/**
 * `npm run -s jwks -w account-svc`: prints the JWKS of JWT_PRIVATE_KEY_FILE's public key.
 * `npm run -s token -w account-svc -- --user ops --role admin [--ttl 3600]`: prints a token signed
 * with JWT_PRIVATE_KEY_FILE, e.g. the first admin's, which no RPC can issue before an admin exists.
 */
import { parseArgs } from 'node:util';
import { publicJwkOf, readPrivateKeyFile, TokenSigner, USER_ID_PATTERN } from '@redpacket/lib';
import { roleOf } from './users.js';

const keyFile = process.env['JWT_PRIVATE_KEY_FILE'];
if (!keyFile) {
  console.error(
    'account-svc: bad environment variable JWT_PRIVATE_KEY_FILE: required (make one: redpacket keys generate)',
  );
  process.exit(2);
}
const privateKeyPem = readPrivateKeyFile(keyFile);
const [command, ...rest] = process.argv.slice(2);

if (command === 'jwks') {
  console.log(JSON.stringify({ keys: [publicJwkOf(privateKeyPem)] }, null, 2));
} else if (command === 'token') {
  const { values } = parseArgs({
    args: rest,
    options: { user: { type: 'string' }, role: { type: 'string', default: 'user' }, ttl: { type: 'string' } },
  });
  const ttl = Number(values.ttl ?? 3600);
  if (!values.user || !USER_ID_PATTERN.test(values.user) || !Number.isInteger(ttl) || ttl < 1) {
    console.error('usage: token --user <id> [--role user|merchant|admin] [--ttl seconds]');
    process.exit(2);
  }
  const role = roleOf(values.role ?? 'user');
  const signer = new TokenSigner({
    privateKeyPem,
    issuer: process.env['JWT_ISSUER'] || undefined,
    audience: process.env['JWT_AUDIENCE'] || undefined,
  });
  console.log(await signer.sign({ userId: values.user, role, ttlSeconds: ttl }));
} else {
  console.error('usage: cli.js jwks | token --user <id> [--role user|admin] [--ttl seconds]');
  process.exit(2);
}

/**
 * `npm run -s jwks -w account-svc`: prints the JWKS for Envoy derived from JWT_SECRET.
 * `npm run -s token -w account-svc -- --user ops --role admin [--ttl 3600]`: prints a token,
 * e.g. the first admin's, which no RPC can issue before an admin account exists.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_JWT_SECRET, jwksFromSecret, signToken, USER_ID_PATTERN } from '@redpacket/lib';

const secret = process.env['JWT_SECRET'] ?? DEFAULT_JWT_SECRET;
const [command, ...rest] = process.argv.slice(2);

if (command === 'jwks') {
  console.log(JSON.stringify(jwksFromSecret(secret), null, 2));
} else if (command === 'token') {
  const { values } = parseArgs({
    args: rest,
    options: { user: { type: 'string' }, role: { type: 'string', default: 'user' }, ttl: { type: 'string' } },
  });
  const ttl = Number(values.ttl ?? 3600);
  if (!values.user || !USER_ID_PATTERN.test(values.user) || !Number.isInteger(ttl) || ttl < 1) {
    console.error('usage: token --user <id> [--role user|admin] [--ttl seconds]');
    process.exit(2);
  }
  const role = values.role === 'admin' ? 'admin' : 'user';
  console.log(await signToken({ secret, userId: values.user, role, ttlSeconds: ttl }));
} else {
  console.error('usage: cli.js jwks | token --user <id> [--role user|admin] [--ttl seconds]');
  process.exit(2);
}

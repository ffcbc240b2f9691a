/** `node gateway/dist/jwks-main.js [FILE]`: writes the JWKS for JWT_SECRET (to stdout without FILE). */
import { writeFileSync } from 'node:fs';
import { jwksFromSecret } from './jwks.js';

const secret = process.env['JWT_SECRET'] ?? 'dev-secret-change-me-0123456789';
const text = `${JSON.stringify(jwksFromSecret(secret))}\n`;
const file = process.argv[2];
if (file) {
  // Envoy reads it; nobody else should.
  writeFileSync(file, text, { mode: 0o644 });
  console.error(`jwks: wrote ${file}`);
} else {
  process.stdout.write(text);
}

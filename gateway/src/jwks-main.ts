/** `node gateway/dist/jwks-main.js [FILE]`: writes the JWKS for JWT_SECRET (to stdout without FILE). */
import { writeFileSync } from 'node:fs';
import { DEFAULT_JWT_SECRET, jwksFromSecret } from '@redpacket/lib';

const secret = process.env['JWT_SECRET'] ?? DEFAULT_JWT_SECRET;
const text = `${JSON.stringify(jwksFromSecret(secret))}\n`;
const file = process.argv[2];
if (file) {
  // Envoy reads it; nobody else should.
  writeFileSync(file, text, { mode: 0o644 });
  console.error(`jwks: wrote ${file}`);
} else {
  process.stdout.write(text);
}

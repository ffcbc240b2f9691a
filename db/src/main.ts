/** `npm run migrate`: applies pending migrations to MYSQL_URL's database (created if missing). */
import { DEFAULT_MYSQL_URL, migrate } from './index.js';

const url = process.env['MYSQL_URL'] ?? DEFAULT_MYSQL_URL;
try {
  const applied = await migrate(url, (m) => console.log(m));
  console.log(applied.length ? `applied ${applied.length} migration(s)` : 'schema is up to date');
} catch (err) {
  console.error(`migrate failed: ${(err as Error).message}`);
  process.exit(1);
}

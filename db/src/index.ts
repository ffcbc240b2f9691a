/** MySQL access for the services: a pool per URL, and the schema migrations (migrations/*.sql). */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import mysql, { type Pool, type PoolConnection, type RowDataPacket } from 'mysql2/promise';
import { Umzug, type UmzugStorage } from 'umzug';

export type { Pool, PoolConnection } from 'mysql2/promise';
export { parkedDeadLetters, type Parked } from './dead-letters.js';

export const DEFAULT_MYSQL_URL = 'mysql://root@127.0.0.1:3306/redpacket';

/** A pool on MYSQL_URL's database; money columns (BIGINT) come back as strings, never floats. */
export function createPool(url: string, connectionLimit = 10): Pool {
  return mysql.createPool({
    uri: url,
    connectionLimit,
    supportBigNumbers: true,
    bigNumberStrings: true,
    dateStrings: false,
    timezone: 'Z',
    multipleStatements: false,
  });
}

const migrationsDir = fileURLToPath(new URL('../migrations/', import.meta.url));

/** Stores applied migration names in `schema_migrations`. */
function mysqlStorage(conn: PoolConnection): UmzugStorage {
  return {
    async logMigration({ name }) {
      await conn.query('INSERT IGNORE INTO schema_migrations (name) VALUES (?)', [name]);
    },
    async unlogMigration({ name }) {
      await conn.query('DELETE FROM schema_migrations WHERE name = ?', [name]);
    },
    async executed() {
      const [rows] = await conn.query<RowDataPacket[]>('SELECT name FROM schema_migrations ORDER BY name');
      return rows.map((r) => String(r['name']));
    },
  };
}

/**
 * Creates the database if missing and applies every migration not yet applied, in file-name
 * order, under a MySQL named lock so concurrent callers (tests, replicas) do not race.
 * Each file holds statements separated by lines of `-- ;`; each statement is idempotent.
 * Returns the names applied by this call.
 */
export async function migrate(url: string, log: (msg: string) => void = () => {}): Promise<string[]> {
  const u = new URL(url);
  const database = decodeURIComponent(u.pathname.replace(/^\//, '')) || 'redpacket';
  if (!/^[A-Za-z0-9_]{1,64}$/.test(database)) throw new Error(`bad database name in MYSQL_URL: ${database}`);
  const server = new URL(url);
  server.pathname = '/';
  const admin = await mysql.createConnection({ uri: server.toString() });
  try {
    await admin.query(`CREATE DATABASE IF NOT EXISTS \`${database}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
  } finally {
    await admin.end();
  }
  const pool = createPool(url, 2);
  const conn = await pool.getConnection();
  try {
    const [lock] = await conn.query<RowDataPacket[]>("SELECT GET_LOCK('redpacket_migrate', 60) AS ok");
    if (Number(lock[0]?.['ok']) !== 1) throw new Error('could not take the migration lock within 60 s');
    await conn.query(
      'CREATE TABLE IF NOT EXISTS schema_migrations (name VARCHAR(255) PRIMARY KEY, applied_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3))',
    );
    const umzug = new Umzug({
      migrations: {
        glob: ['*.sql', { cwd: migrationsDir }],
        resolve: ({ name, path }) => ({
          name,
          up: async () => {
            const sql = await readFile(path ?? '', 'utf8');
            for (const stmt of sql.split(/^--\s*;\s*$/m)) {
              if (stmt.replace(/--.*$/gm, '').trim()) await conn.query(stmt);
            }
          },
        }),
      },
      storage: mysqlStorage(conn),
      logger: undefined,
    });
    const applied = await umzug.up();
    for (const m of applied) log(`migrated ${m.name}`);
    return applied.map((m) => m.name);
  } finally {
    await conn.query("SELECT RELEASE_LOCK('redpacket_migrate')").catch(() => undefined);
    conn.release();
    await pool.end();
  }
}

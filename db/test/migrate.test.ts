import mysql from 'mysql2/promise';
import { expect, it } from 'vitest';
import { migrate } from '../src/index.js';

const SERVER = process.env['MYSQL_URL'] ? new URL(process.env['MYSQL_URL']) : new URL('mysql://root@127.0.0.1:3306/');

it('migrate creates the database, applies every migration once, and a second run changes nothing', async () => {
  const db = `rp_migrate_${Math.random().toString(36).slice(2, 10)}`;
  const url = new URL(SERVER);
  url.pathname = `/${db}`;
  let admin;
  try {
    const serverUrl = new URL(SERVER);
    serverUrl.pathname = '/';
    admin = await mysql.createConnection({ uri: serverUrl.toString() });
  } catch (err) {
    throw new Error(
      'MariaDB is not reachable at 127.0.0.1:3306; start it with: start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd',
      { cause: err },
    );
  }
  try {
    // two concurrent callers (replicas, parallel tests) must not race each other
    const [a, b] = await Promise.all([migrate(url.toString()), migrate(url.toString())]);
    const applied = [...a, ...b].sort();
    expect(applied.length).toBeGreaterThan(0);
    expect(new Set(applied).size).toBe(applied.length);
    expect(await migrate(url.toString())).toEqual([]);
    const [rows] = await admin.query(`SELECT name FROM \`${db}\`.schema_migrations`);
    expect((rows as { name: string }[]).map((r) => r.name).sort()).toEqual(applied);
    const [tables] = await admin.query(`SHOW TABLES FROM \`${db}\``);
    expect((tables as Record<string, string>[]).map((t) => Object.values(t)[0])).toContain('campaigns');
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS \`${db}\``);
    await admin.end();
  }
});

it('refuses a database name that is not a plain identifier', async () => {
  await expect(migrate('mysql://root@127.0.0.1:3306/bad-name;drop')).rejects.toThrow(/bad database name/);
});

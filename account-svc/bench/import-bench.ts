/**
 * `npm run bench:import [-- --users 1000000 --per-message 1000]`: starts account-svc as a child
 * process (so the client's encoding does not share its event loop), streams that many
 * device-less users through ImportUsers, prints users/s, then deletes them. A script, not a
 * test: figures on a shared 2-core machine are noisy.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { credentials } from '@grpc/grpc-js';
import { createPool, DEFAULT_MYSQL_URL } from '@redpacket/db';
import { keys } from '@redpacket/lib';
import { Redis } from 'ioredis';
import { bearer, testSigner } from '@redpacket/lib/testing';
import { AccountServiceClient, type ImportUsersResponse } from '@redpacket/proto';

const { values } = parseArgs({
  options: {
    users: { type: 'string', default: '1000000' },
    'per-message': { type: 'string', default: '1000' },
    port: { type: 'string', default: '17010' },
  },
});
const total = Number(values.users);
const perMessage = Number(values['per-message']);
const port = Number(values.port);
const mysqlUrl = process.env['MYSQL_URL'] ?? DEFAULT_MYSQL_URL;
const prefix = `bench-${randomBytes(4).toString('hex')}-`;

// The service resyncs the whole eligibility mirror at start; on a shared development Redis it
// gets database 15, so it cannot drop entries other people's tests keep in database 0.
const benchRedis = new URL(process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379');
benchRedis.pathname = '/15';
const server = spawn(process.execPath, [fileURLToPath(new URL('../src/main.js', import.meta.url))], {
  env: {
    ...process.env,
    GRPC_PORT: String(port),
    JWKS_PORT: 'off',
    ...testSigner().env,
    LOG_LEVEL: 'warn',
    REDIS_URL: benchRedis.toString(),
  },
  stdio: ['ignore', 'inherit', 'inherit'],
});
const client = new AccountServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
const pool = createPool(mysqlUrl, 2);

try {
  await new Promise<void>((resolve, reject) =>
    client.waitForReady(Date.now() + 30_000, (err) => (err ? reject(err) : resolve())),
  );
  const md = bearer(await testSigner().sign({ userId: 'bench-admin', role: 'admin' }));
  // the machine's load at the start and the end, so a reader can judge the noise
  const loadAtStart = loadavg().map((x) => Number(x.toFixed(2)));
  const started = performance.now();
  const res = await new Promise<ImportUsersResponse>((resolve, reject) => {
    const stream = client.importUsers(md, (err, r) => (err ? reject(err) : resolve(r)));
    let next = 0;
    const pump = (): void => {
      while (next < total) {
        const n = Math.min(perMessage, total - next);
        const users = Array.from({ length: n }, (_, i) => ({
          userId: `${prefix}${next + i}`,
          displayName: '',
          password: '',
          riskScore: 0,
          role: '',
        }));
        next += n;
        if (!stream.write({ users })) {
          stream.once('drain', pump);
          return;
        }
      }
      stream.end();
    };
    pump();
  });
  const seconds = (performance.now() - started) / 1000;
  console.log(
    JSON.stringify({
      users: total,
      perMessage,
      created: Number(res.created),
      duplicates: Number(res.duplicates),
      seconds: Number(seconds.toFixed(2)),
      usersPerSecond: Math.round(total / seconds),
      loadAverageAtStart: loadAtStart,
      loadAverageAtEnd: loadavg().map((x) => Number(x.toFixed(2))),
    }),
  );
} finally {
  client.close();
  server.kill('SIGTERM');
  for (;;) {
    const [r] = await pool.query('DELETE FROM users WHERE user_id LIKE ? LIMIT 50000', [`${prefix}%`]);
    if ((r as { affectedRows: number }).affectedRows === 0) break;
  }
  await pool.end();
  const redis = new Redis(benchRedis.toString());
  await redis.del(keys.blocked, keys.risk);
  redis.disconnect();
}

/** Test helpers: a MySQL database of a test's own (migrated, dropped afterwards), so the audit sees only its rows; budgets. */
import { randomBytes } from 'node:crypto';
import { createPool, migrate, type Pool } from '@redpacket/db';
import { TEST_MYSQL_URL } from '@redpacket/lib/testing';
import { accountId, EXTERNAL } from './accounts.js';
import { transfer } from './transfers.js';

export interface PrivateDatabase {
  url: string;
  pool: Pool;
  drop(): Promise<void>;
}

/** Creates and migrates `rp_t<random>` on the test MySQL, or fails saying how to start it. */
export async function privateDatabase(connectionLimit = 12): Promise<PrivateDatabase> {
  const u = new URL(TEST_MYSQL_URL);
  u.pathname = `/rp_t${randomBytes(5).toString('hex')}`;
  const url = u.toString();
  try {
    await migrate(url);
  } catch (err) {
    throw new Error(
      `MySQL is not reachable at ${TEST_MYSQL_URL} (${(err as Error).message}); start it with: ` +
        'start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd (or ./scripts/setup.sh)',
      { cause: err },
    );
  }
  const pool = createPool(url, connectionLimit);
  return {
    url,
    pool,
    async drop() {
      await pool.query(`DROP DATABASE IF EXISTS \`${u.pathname.slice(1)}\``);
      await pool.end();
    },
  };
}

/**
 * Deposits `cents` into the operator budget `operator:<ownerId>` (the account CreateCampaign
 * debits) from external, under a fresh key: what a test does before creating a campaign.
 */
export async function depositBudget(pool: Pool, ownerId: string, cents: bigint | number): Promise<void> {
  await transfer(pool, {
    key: `test-budget:${randomBytes(8).toString('hex')}`,
    kind: 'deposit',
    from: EXTERNAL,
    to: accountId.operator(ownerId),
    amountCents: BigInt(cents),
  });
}

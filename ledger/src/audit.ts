/**
 * The audit (invariant 8): every transfer balances, every balance equals its entries, no account
 * but `external` is negative, every settled campaign's escrow is 0, and the money inside the
 * system equals deposits minus withdrawals. Read in one consistent snapshot, so transfers
 * committing meanwhile never show as problems.
 */
import type { Pool } from '@redpacket/db';
import type { RowDataPacket } from 'mysql2/promise';
import { EXTERNAL } from './accounts.js';

/** What the audit found: consistent when `problems` is empty. */
export interface AuditReport {
  consistent: boolean;
  accountsChecked: number;
  transfersChecked: number;
  /** One line per problem, naming the account or transfer. */
  problems: string[];
}

/** The most problems listed per check; the count of the rest is said. */
const LIMIT = 200;

/** Runs every check of invariant 8 over the whole ledger. */
export async function audit(pool: Pool): Promise<AuditReport> {
  const conn = await pool.getConnection();
  try {
    await conn.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ');
    await conn.query('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY');
    const q = async (sql: string): Promise<RowDataPacket[]> => (await conn.query<RowDataPacket[]>(sql))[0];
    const problems: string[] = [];
    const add = (rows: RowDataPacket[], line: (r: RowDataPacket) => string): void => {
      for (const r of rows.slice(0, LIMIT)) problems.push(line(r));
      if (rows.length > LIMIT) problems.push(`... and ${rows.length - LIMIT} more like the one above`);
    };

    const [counts] = await q(
      `SELECT (SELECT COUNT(*) FROM accounts) AS accounts, (SELECT COUNT(*) FROM transfers) AS transfers`,
    );
    add(
      await q(`SELECT t.transfer_id, t.idempotency_key, t.debit_account, t.credit_account, t.amount_cents,
                      COUNT(e.entry_id) AS sides, COALESCE(SUM(e.amount_cents), 0) AS net,
                      COALESCE(SUM(e.account_id = t.debit_account AND e.amount_cents = -t.amount_cents), 0) AS debits,
                      COALESCE(SUM(e.account_id = t.credit_account AND e.amount_cents = t.amount_cents), 0) AS credits
                 FROM transfers t LEFT JOIN entries e ON e.transfer_id = t.transfer_id
                GROUP BY t.transfer_id
               HAVING sides <> 2 OR net <> 0 OR debits <> 1 OR credits <> 1 OR t.amount_cents <= 0
                      OR t.debit_account = t.credit_account`),
      (r) =>
        `transfer ${r['transfer_id']} (${r['idempotency_key']}) does not balance: ${r['amount_cents']} cents ` +
        `${r['debit_account']} -> ${r['credit_account']}, but its ${r['sides']} entries net ${r['net']} cents ` +
        `(debit side ${Number(r['debits']) === 1 ? 'ok' : 'wrong'}, credit side ${Number(r['credits']) === 1 ? 'ok' : 'wrong'})`,
    );
    add(
      await q(`SELECT e.entry_id, e.transfer_id, e.account_id FROM entries e
                 LEFT JOIN transfers t ON t.transfer_id = e.transfer_id WHERE t.transfer_id IS NULL`),
      (r) => `entry ${r['entry_id']} of ${r['account_id']} belongs to no transfer (transfer ${r['transfer_id']})`,
    );
    add(
      await q(`SELECT e.account_id, SUM(e.amount_cents) AS net FROM entries e
                 LEFT JOIN accounts a ON a.account_id = e.account_id
                WHERE a.account_id IS NULL GROUP BY e.account_id`),
      (r) => `account ${r['account_id']} has entries netting ${r['net']} cents but no account row`,
    );
    add(
      await q(`SELECT a.account_id, a.balance_cents, COALESCE(SUM(e.amount_cents), 0) AS net
                 FROM accounts a LEFT JOIN entries e ON e.account_id = a.account_id
                GROUP BY a.account_id, a.balance_cents HAVING a.balance_cents <> net`),
      (r) =>
        `account ${r['account_id']} balance ${r['balance_cents']} cents differs from its entries ` +
        `(${r['net']} cents) by ${BigInt(r['balance_cents']) - BigInt(r['net'])}`,
    );
    add(
      await q(`SELECT account_id, balance_cents FROM accounts WHERE kind <> 'external' AND balance_cents < 0`),
      (r) => `account ${r['account_id']} is negative: ${r['balance_cents']} cents`,
    );
    add(
      await q(`SELECT s.campaign_id, a.balance_cents FROM settlements s
                 JOIN accounts a ON a.account_id = CONCAT('escrow:', s.campaign_id)
                WHERE a.balance_cents <> 0`),
      (r) => `escrow:${r['campaign_id']} holds ${r['balance_cents']} cents but the campaign is settled`,
    );
    const [money] = await q(`SELECT
        (SELECT COALESCE(SUM(balance_cents), 0) FROM accounts WHERE kind <> 'external') AS inside,
        (SELECT COALESCE(SUM(balance_cents), 0) FROM accounts WHERE account_id = '${EXTERNAL}') AS external,
        (SELECT COALESCE(SUM(amount_cents), 0) FROM transfers WHERE debit_account = '${EXTERNAL}') AS deposits,
        (SELECT COALESCE(SUM(amount_cents), 0) FROM transfers WHERE credit_account = '${EXTERNAL}') AS withdrawals`);
    const inside = BigInt(money?.['inside'] ?? 0);
    const inOut = BigInt(money?.['deposits'] ?? 0) - BigInt(money?.['withdrawals'] ?? 0);
    if (inside !== inOut) {
      problems.push(
        `money inside the system (${inside} cents) differs from deposits - withdrawals (${inOut} cents) by ${inside - inOut}`,
      );
    }
    const external = BigInt(money?.['external'] ?? 0);
    if (external !== -inside) {
      problems.push(`account ${EXTERNAL} balance ${external} cents is not minus the money inside (${-inside} cents)`);
    }
    await conn.commit();
    return {
      consistent: problems.length === 0,
      accountsChecked: Number(counts?.['accounts'] ?? 0),
      transfersChecked: Number(counts?.['transfers'] ?? 0),
      problems,
    };
  } finally {
    await conn.rollback().catch(() => undefined);
    conn.release();
  }
}

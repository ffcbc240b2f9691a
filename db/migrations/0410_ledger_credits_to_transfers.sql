-- Moves the rows of the old credit-only `ledger` table (award and refund credits written before
-- the double-entry ledger) into transfers, so the audit sees all money:
--   an opening deposit external -> escrow:<campaign> of what the campaign's old rows paid out,
--   then escrow:<campaign> -> user:<winner> per award and escrow:<campaign> -> operator:<owner>
--   for the refund.
-- Each transfer carries the idempotency key gift-svc and settle use for it (award:<campaign>:<packet>,
-- refund:<campaign>; at most 135 characters with the old columns, so never hashed): an old row is
-- moved once, a rerun moves nothing, and a redelivered old win replays instead of paying twice.
-- The moves are staged in a table of their own and applied in one transaction.
CREATE TABLE IF NOT EXISTS ledger_0410_moves (
  seq BIGINT NOT NULL PRIMARY KEY,
  idempotency_key VARCHAR(191) NOT NULL,
  kind VARCHAR(32) NOT NULL,
  debit_account VARCHAR(160) NOT NULL,
  credit_account VARCHAR(160) NOT NULL,
  amount_cents BIGINT NOT NULL,
  note VARCHAR(255) NOT NULL,
  UNIQUE KEY ledger_0410_moves_key (idempotency_key)
) ENGINE=InnoDB
-- ;
-- READ COMMITTED, as the ledger's own transactions: the balances read are the latest committed.
SET TRANSACTION ISOLATION LEVEL READ COMMITTED
-- ;
START TRANSACTION
-- ;
DELETE FROM ledger_0410_moves
-- ;
-- The old rows not moved yet; seq 2 * entry_id + 1 keeps their order and leaves room for the
-- opening deposit before each campaign's first row.
INSERT INTO ledger_0410_moves (seq, idempotency_key, kind, debit_account, credit_account, amount_cents, note)
SELECT m.seq, m.k, m.kind, m.debit_account, m.credit_account, m.amount_cents, m.note
  FROM (SELECT 2 * l.entry_id + 1 AS seq,
               IF(l.kind = 'award', CONCAT('award:', l.campaign_id, ':', l.ref), CONCAT('refund:', l.campaign_id)) AS k,
               l.kind,
               CONCAT('escrow:', l.campaign_id) AS debit_account,
               CONCAT(IF(l.kind = 'award', 'user:', 'operator:'), l.account_id) AS credit_account,
               l.amount_cents,
               CONCAT('moved from ledger entry ', l.entry_id) AS note
          FROM ledger l
         WHERE l.amount_cents > 0) m
 WHERE NOT EXISTS (SELECT 1 FROM transfers t WHERE t.idempotency_key = m.k)
-- ;
-- The opening deposit of each campaign: exactly what its moved rows pay out of the escrow.
INSERT INTO ledger_0410_moves (seq, idempotency_key, kind, debit_account, credit_account, amount_cents, note)
SELECT o.seq, o.k, 'deposit', 'external', o.escrow, o.cents, 'opening of the credits moved from ledger'
  FROM (SELECT 2 * MIN((seq - 1) DIV 2) AS seq,
               CONCAT('migration-0410:opening:', debit_account) AS k,
               debit_account AS escrow,
               SUM(amount_cents) AS cents
          FROM ledger_0410_moves
         GROUP BY debit_account) o
 WHERE NOT EXISTS (SELECT 1 FROM transfers t WHERE t.idempotency_key = o.k)
-- ;
INSERT INTO transfers (idempotency_key, kind, debit_account, credit_account, amount_cents, note)
SELECT idempotency_key, kind, debit_account, credit_account, amount_cents, note
  FROM ledger_0410_moves
 ORDER BY seq
-- ;
INSERT IGNORE INTO accounts (account_id, kind)
SELECT a.id, IF(a.id = 'external', 'external', SUBSTRING_INDEX(a.id, ':', 1))
  FROM (SELECT debit_account AS id FROM ledger_0410_moves UNION SELECT credit_account FROM ledger_0410_moves) a
-- ;
-- Locked in id order, as every ledger transaction locks its accounts.
-- A join on the distinct ids, not IN (... UNION ...): MariaDB runs that IN as a dependent
-- subquery, once per account row, which took minutes over a few ten thousand old rows.
SELECT a.account_id
  FROM accounts a
  JOIN (SELECT debit_account AS id FROM ledger_0410_moves
        UNION
        SELECT credit_account FROM ledger_0410_moves) x ON x.id = a.account_id
 ORDER BY a.account_id
   FOR UPDATE
-- ;
-- Both sides of each moved transfer, each with the balance its account had right after it.
INSERT INTO entries (transfer_id, account_id, amount_cents, balance_after_cents)
SELECT s.transfer_id, s.account_id, s.amount_cents,
       a.balance_cents + SUM(s.amount_cents) OVER (PARTITION BY s.account_id ORDER BY s.transfer_id, s.side
                                                   ROWS UNBOUNDED PRECEDING)
  FROM (SELECT t.transfer_id, m.debit_account AS account_id, -m.amount_cents AS amount_cents, 0 AS side
          FROM ledger_0410_moves m JOIN transfers t ON t.idempotency_key = m.idempotency_key
        UNION ALL
        SELECT t.transfer_id, m.credit_account, m.amount_cents, 1
          FROM ledger_0410_moves m JOIN transfers t ON t.idempotency_key = m.idempotency_key) s
  JOIN accounts a ON a.account_id = s.account_id
-- ;
UPDATE accounts a
  JOIN (SELECT d.account_id, SUM(d.amount_cents) AS net
          FROM (SELECT debit_account AS account_id, -amount_cents AS amount_cents FROM ledger_0410_moves
                UNION ALL
                SELECT credit_account, amount_cents FROM ledger_0410_moves) d
         GROUP BY d.account_id) n ON n.account_id = a.account_id
   SET a.balance_cents = a.balance_cents + n.net
-- ;
COMMIT
-- ;
DROP TABLE IF EXISTS ledger_0410_moves

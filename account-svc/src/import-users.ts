/**
 * Bulk pre-opening: records arrive in a client stream, are validated one by one, and go to
 * MySQL in multi-row INSERT IGNORE batches on a few connections at once. A duplicate id is
 * counted and named (up to a limit), never fatal.
 */
import { ServiceError } from '@redpacket/lib';
import type { ImportUsersResponse, UserRecord } from '@redpacket/proto';
import type { RowDataPacket } from 'mysql2/promise';
import type { AccountStore } from './accounts.js';
import { inMirroredTransaction } from './eligibility-mirror.js';
import { hashPassword } from './passwords.js';
import { insertUsers, validateUser, type NewUser } from './users.js';

export interface ImportOptions {
  /** Rows per INSERT. */
  batchSize?: number;
  /** INSERTs in flight at once (each on its own pooled connection). */
  concurrency?: number;
  /** Problems named in the response; the rest are only counted. */
  maxErrors?: number;
}

export class UserImporter {
  private readonly batchSize: number;
  private readonly concurrency: number;
  private readonly maxErrors: number;
  private buffer: NewUser[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private failure: unknown;
  private readonly result: ImportUsersResponse = {
    received: 0n,
    created: 0n,
    duplicates: 0n,
    rejected: 0n,
    errors: [],
  };

  constructor(
    private readonly store: AccountStore,
    opts: ImportOptions = {},
  ) {
    this.batchSize = opts.batchSize ?? 2000;
    this.concurrency = opts.concurrency ?? 4;
    this.maxErrors = opts.maxErrors ?? 20;
  }

  private note(line: string): void {
    if (this.result.errors.length < this.maxErrors) this.result.errors.push(line);
  }

  /** Takes records; resolves once they are buffered or sent (waits while too many INSERTs run). */
  async add(records: UserRecord[]): Promise<void> {
    for (const rec of records) {
      this.result.received++;
      try {
        this.buffer.push(validateUser(rec, `users[${this.result.received - 1n}]`));
      } catch (err) {
        if (!(err instanceof ServiceError)) throw err;
        this.result.rejected++;
        this.note(err.message);
      }
      if (this.buffer.length >= this.batchSize) await this.flush();
    }
  }

  /** Sends what is left, waits for every INSERT, and returns the counts. */
  async finish(): Promise<ImportUsersResponse> {
    await this.flush();
    await Promise.all(this.inFlight);
    if (this.failure !== undefined) throw this.failure;
    return this.result;
  }

  private async flush(): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    const batch = this.buffer;
    this.buffer = [];
    if (batch.length === 0) return;
    while (this.inFlight.size >= this.concurrency) await Promise.race(this.inFlight);
    if (this.failure !== undefined) throw this.failure;
    const p: Promise<void> = this.insert(batch).then(
      () => void this.inFlight.delete(p),
      (err: unknown) => {
        this.failure ??= err;
        this.inFlight.delete(p);
      },
    );
    this.inFlight.add(p);
  }

  private async insert(batch: NewUser[]): Promise<void> {
    const rows: (NewUser & { passwordHash: string | null })[] = [];
    for (const u of batch) {
      // Only accounts with a secret cost a hash; device-less pre-opened ones are free.
      const passwordHash = u.password === undefined ? null : await hashPassword(u.password, this.store.passwordCost);
      rows.push({ ...u, passwordHash });
    }
    const risky = batch.filter((u) => u.riskScore > 0).map((u) => u.userId);
    const created = await inMirroredTransaction(this.store.pool, this.store.redis, async (conn) => {
      const n = await insertUsers(conn, rows, true);
      if (n < rows.length && this.result.errors.length < this.maxErrors) {
        const [warnings] = await conn.query<RowDataPacket[]>('SHOW WARNINGS LIMIT ?', [this.maxErrors]);
        for (const w of warnings) this.note(String(w['Message']));
      }
      // A duplicate keeps its stored score: the mirror is written from what MySQL holds.
      return { result: n, touched: risky };
    });
    this.result.created += BigInt(created);
    this.result.duplicates += BigInt(rows.length - created);
  }
}

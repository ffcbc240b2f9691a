/** Reads a users CSV (header: user_id[,display_name][,password][,risk_score]) in batches. */
import { createReadStream, statSync } from 'node:fs';
import { parse } from 'csv-parse';
import { USER_ID_PATTERN } from '@redpacket/lib';
import type { UserRecord } from '@redpacket/proto';
import { usageError } from './errors.js';

export interface UserBatch {
  users: UserRecord[];
  /** Bytes of the file read so far, for progress. */
  bytesRead: number;
  /** Rows refused here, before sending ("line 7: ..."). */
  rejected: string[];
}

export const fileSize = (path: string): number => {
  try {
    return statSync(path).size;
  } catch (err) {
    throw usageError(`cannot read ${path}: ${(err as Error).message}`);
  }
};

/** Yields batches of at most `batchSize` valid users; invalid rows are reported, not sent. */
export async function* readUserBatches(path: string, batchSize: number): AsyncGenerator<UserBatch> {
  fileSize(path);
  const file = createReadStream(path);
  const parser = file.pipe(
    parse({ columns: (h: string[]) => h.map((c) => c.trim().toLowerCase()), trim: true, skip_empty_lines: true }),
  );
  let users: UserRecord[] = [];
  let rejected: string[] = [];
  let line = 1;
  let checkedHeader = false;
  for await (const row of parser as AsyncIterable<Record<string, string>>) {
    line++;
    if (!checkedHeader) {
      checkedHeader = true;
      if (!('user_id' in row)) throw usageError(`${path}: the header must name a user_id column`);
    }
    const userId = row['user_id'] ?? '';
    const risk = row['risk_score'] ?? '';
    if (!USER_ID_PATTERN.test(userId)) {
      rejected.push(`line ${line}: user_id "${userId}" must be 1-128 characters of [A-Za-z0-9_.@:-]`);
    } else if (risk !== '' && !/^\d{1,3}$/.test(risk)) {
      rejected.push(`line ${line}: risk_score "${risk}" must be 0-100`);
    } else {
      users.push({
        userId,
        displayName: row['display_name'] ?? '',
        password: row['password'] ?? '',
        riskScore: risk === '' ? 0 : Number(risk),
        role: '',
      });
    }
    if (users.length >= batchSize) {
      yield { users, bytesRead: file.bytesRead, rejected };
      users = [];
      rejected = [];
    }
  }
  if (users.length || rejected.length) yield { users, bytesRead: file.bytesRead, rejected };
}

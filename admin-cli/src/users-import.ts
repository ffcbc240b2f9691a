/** Streams users to account-svc's ImportUsers: what `users import` and the demo's crowd both send. */
import type { ImportUsersResponse, UserRecord } from '@redpacket/proto';
import type { CliContext } from './context.js';
import type { UserBatch } from './users-csv.js';

/** What an import sent and what account-svc answered. */
export interface ImportResult {
  response: ImportUsersResponse;
  /** Users sent (the rows refused before sending not counted). */
  sent: number;
  /** Rows refused before sending ("line 7: ..."). */
  rejected: string[];
}

export interface ImportOptions {
  /** The whole stream's deadline. */
  deadlineMs: number;
  /** After each batch is taken by the stream, with the users sent so far (a progress bar). */
  onBatch?: (batch: UserBatch, sent: number) => void;
}

/**
 * Sends every batch as one message through @redpacket/client, which writes the next one only once
 * the stream drains (back-pressure: a large file is never read faster than account-svc takes it).
 * The first batch is read before calling, so a bad file is reported as such, server up or not.
 */
export async function importUserBatches(
  ctx: CliContext,
  batches: AsyncIterator<UserBatch>,
  o: ImportOptions,
): Promise<ImportResult> {
  const first = await batches.next();
  const result = { sent: 0, rejected: [] as string[] };
  async function* messages(): AsyncGenerator<UserRecord[]> {
    for (let next = first; !next.done; next = await batches.next()) {
      const batch = next.value;
      result.rejected.push(...batch.rejected);
      if (batch.users.length) {
        yield batch.users;
        result.sent += batch.users.length;
      }
      o.onBatch?.(batch, result.sent);
    }
  }
  const response = await ctx.via('account', (client) => client.importUsers(messages(), { deadlineMs: o.deadlineMs }));
  return { response, ...result };
}

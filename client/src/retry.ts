/**
 * The grab's retry: only UNAVAILABLE and DEADLINE_EXCEEDED, with the same request id every time,
 * which is safe because grab-svc answers a repeated request id with the original result. Bounded
 * by attempts and by total time; exponential back-off with full jitter (exponential-backoff, as
 * gift-svc and wins use it), so a fleet of clients does not come back in step.
 */
import { status } from '@grpc/grpc-js';
import { backOff } from 'exponential-backoff';
import { RedPacketError } from './errors.js';

/** How the grab retries. */
export interface RetryOptions {
  /** Attempts in all, the first included (default 5; 1 = no retry). */
  attempts?: number;
  /** Total time in ms from the first attempt; no attempt starts after it (default 10 000). */
  maxElapsedMs?: number;
  /** The first back-off in ms, doubled each retry, before jitter (default 50). */
  initialDelayMs?: number;
  /** The largest back-off in ms (default 1 000). */
  maxDelayMs?: number;
  /** Called before each retry with the error that caused it and the number (from 1) of the attempt coming. */
  onRetry?: (err: RedPacketError, nextAttempt: number) => void;
}

export const DEFAULT_RETRY = { attempts: 5, maxElapsedMs: 10_000, initialDelayMs: 50, maxDelayMs: 1_000 } as const;

const RETRYABLE: ReadonlySet<status> = new Set([status.UNAVAILABLE, status.DEADLINE_EXCEEDED]);

/** Whether a failed grab may be sent again with the same request id. */
export const isRetryable = (err: unknown): err is RedPacketError =>
  err instanceof RedPacketError && RETRYABLE.has(err.code);

/**
 * Runs `attempt` until it succeeds, fails with a non-retryable error or the bounds are reached;
 * each attempt gets a deadline no later than the end of the total time.
 */
export async function withRetry<T>(
  attempt: (deadlineMs: number) => Promise<T>,
  deadlineMs: number,
  opts: RetryOptions = {},
): Promise<T> {
  const o = { ...DEFAULT_RETRY, ...opts };
  const started = Date.now();
  const remaining = (): number => o.maxElapsedMs - (Date.now() - started);
  let last: unknown;
  return backOff(
    () => {
      // The back-off may have slept past the bound: give up with the last error, not a 1 ms try.
      const left = remaining();
      if (left <= 0 && last !== undefined) return Promise.reject(last);
      return attempt(deadlineMs > 0 ? Math.min(deadlineMs, left) : left).catch((err: unknown) => {
        last = err;
        throw err;
      });
    },
    {
      numOfAttempts: Math.max(1, o.attempts),
      startingDelay: o.initialDelayMs,
      maxDelay: o.maxDelayMs,
      timeMultiple: 2,
      jitter: 'full',
      // exponential-backoff asks after every failure, the last one too, with the failures so far.
      retry: (err: unknown, failed: number) => {
        if (!isRetryable(err) || failed >= o.attempts || remaining() <= 0) return false;
        o.onRetry?.(err, failed + 1);
        return true;
      },
    },
  );
}

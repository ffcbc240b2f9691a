/** Parsers for option values: durations, times, money and counts. */
import { usageError } from './errors.js';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "250ms", "2s", "1.5m", "1h", "1d" or a plain number of milliseconds. */
export function durationMs(text: string, what = 'duration'): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!m) throw usageError(`${what}: "${text}" is not a duration (e.g. 500ms, 2s, 10m, 1h)`);
  return Math.round(Number(m[1]) * UNITS[m[2] ?? 'ms']!);
}

/** "now", "+30s" (from now) or an ISO 8601 time. */
export function timeArg(text: string, what: string, nowMs = Date.now()): Date {
  if (text === 'now') return new Date(nowMs);
  if (text.startsWith('+')) return new Date(nowMs + durationMs(text.slice(1), what));
  const t = Date.parse(text);
  if (!Number.isFinite(t)) throw usageError(`${what}: "${text}" is not a time (now, +30s or ISO 8601)`);
  return new Date(t);
}

/** A positive yuan amount with at most two decimals ("10000", "99.5") as integer cents. */
export function yuanToCents(text: string): bigint {
  const m = /^(\d+)(?:\.(\d{1,2}))?$/.exec(text.trim().replace(/^¥/, '').replace(/,/g, ''));
  if (!m) throw usageError(`amount: "${text}" is not a yuan amount with at most 2 decimals`);
  return BigInt(m[1]!) * 100n + BigInt((m[2] ?? '').padEnd(2, '0'));
}

export function intArg(text: string, what: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^-?\d+$/.test(text.trim())) throw usageError(`${what}: "${text}" is not an integer`);
  const n = Number(text);
  if (n < min || n > max) throw usageError(`${what}: must be between ${min} and ${max}`);
  return n;
}

/** Commander option parsers (value, previous) -> parsed. */
export const asInt =
  (what: string, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  (v: string): number =>
    intArg(v, what, min, max);
export const asDuration =
  (what: string) =>
  (v: string): number =>
    durationMs(v, what);

/** Output helpers: money in cents, times, JSON-safe values and tables. */
import { campaignStateToJSON, outcomeToJSON, splitToJSON } from '@redpacket/proto';
import Table from 'cli-table3';
import pc from 'picocolors';

/** Integer cents as yuan, e.g. 123456n -> "¥1,234.56"; no floating point on the way. */
export function yuan(cents: bigint | number | string): string {
  const c = BigInt(cents);
  const a = c < 0n ? -c : c;
  return `${c < 0n ? '-' : ''}¥${(a / 100n).toLocaleString('en-US')}.${String(a % 100n).padStart(2, '0')}`;
}

/** A count with thousands separators. */
export const num = (n: bigint | number): string => n.toLocaleString('en-US');

export const when = (d: Date | undefined): string => (d ? d.toISOString().replace('.000Z', 'Z') : '-');

// Enum fields of the wire types, shown by name rather than number.
const ENUM_FIELDS: Record<string, (v: number) => string> = {
  state: campaignStateToJSON,
  split: splitToJSON,
  outcome: outcomeToJSON,
};

/**
 * A wire message as plain JSON: every field kept (defaults included, unlike proto3 JSON),
 * int64 as strings (as protojson and ghz do), timestamps as ISO strings, enums by name.
 */
export function plain(value: unknown, key = ''): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'number' && key in ENUM_FIELDS) return ENUM_FIELDS[key]!(value);
  if (Array.isArray(value)) return value.map((v) => plain(v));
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => [k, plain(v, k)]),
    );
  }
  return value;
}

export const stateName = (s: number): string => campaignStateToJSON(s).replace(/^CAMPAIGN_STATE_/, '');

/** A two-column table of label/value rows. */
// colours only where picocolors would use them (a terminal, NO_COLOR unset)
const style = (): Table.TableConstructorOptions['style'] =>
  pc.isColorSupported ? undefined : { head: [], border: [] };

export function keyValueTable(rows: [string, string][]): string {
  const t = new Table({ style: style() });
  for (const [k, v] of rows) t.push({ [k]: v });
  return t.toString();
}

export function table(head: string[], rows: string[][]): string {
  const t = new Table({ head, style: style() });
  t.push(...rows);
  return t.toString();
}

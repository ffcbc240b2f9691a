/**
 * One outbox entry, both ways: lua/includes/record-win.lua writes it (for grab-6.lua and
 * take-4.lua) and the relay decodes it here; the field names are defined once, below.
 */
import type { WinEvent } from '@redpacket/wins';

/**
 * The entry's field for each WinEvent field, in the order record-win.lua's XADD writes them:
 * c campaign id, p packet id, u user id, a amount in cents, r request id, t won at (ms, Redis
 * TIME), x trace id (the edge's x-request-id, '' when none; absent in entries written before it
 * existed). The stream id is the entry's own id. A change here is a change of that XADD.
 */
export const OUTBOX_FIELDS = {
  campaignId: 'c',
  packetId: 'p',
  userId: 'u',
  amountCents: 'a',
  requestId: 'r',
  wonAtMs: 't',
  traceId: 'x',
} as const satisfies Partial<Record<keyof WinEvent, string>>;

/**
 * Turns an outbox entry into the message the relay publishes. A damaged entry still decodes
 * (missing strings '', a bad number 0), so it is published and gift-svc refuses it visibly.
 */
export function entryToWin(id: string, fields: string[]): WinEvent {
  const f = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i] as string, fields[i + 1] as string);
  const str = (name: string): string => f.get(name) ?? '';
  const int = (name: string): bigint => {
    const v = f.get(name);
    return v && /^\d{1,15}$/.test(v) ? BigInt(v) : 0n;
  };
  const F = OUTBOX_FIELDS;
  return {
    campaignId: str(F.campaignId),
    packetId: str(F.packetId),
    userId: str(F.userId),
    amountCents: int(F.amountCents),
    requestId: str(F.requestId),
    wonAtMs: int(F.wonAtMs),
    streamId: id,
    traceId: str(F.traceId),
  };
}

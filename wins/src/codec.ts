/** The WinEvent message codec: what the relay publishes, and what gift-svc accepts for crediting. */
import { CAMPAIGN_ID_PATTERN, USER_ID_PATTERN } from '@redpacket/lib';
import { WinEvent } from '@redpacket/proto';

export const WIN_CONTENT_TYPE = 'application/x-protobuf; proto=redpacket.v1.WinEvent';

/** AMQP header carrying a win's trace id (the edge's x-request-id), as the body's trace_id does. */
export const TRACE_HEADER = 'x-request-id';

/** A trace id as it may go into a log line: it never stops a win, so it is bounded, not refused. */
export const traceForLog = (traceId: string): string => traceId.slice(0, 128);

export const encodeWin = (w: WinEvent): Buffer => Buffer.from(WinEvent.encode(w).finish());

/** What makes a decoded win acceptable for crediting. */
const PACKET_ID = /^[A-Za-z0-9_-]{1,32}$/;
const MAX_AMOUNT = 1_000_000_000_000n;
/** 9999-12-31: what a DATETIME holds. */
const MAX_WON_AT_MS = 253_402_300_799_999n;

/** Decodes and validates a message body; throws with the reason when it is not a usable win. */
export function decodeWin(body: Buffer): WinEvent {
  let w: WinEvent;
  try {
    w = WinEvent.decode(body);
  } catch (err) {
    throw new Error(`not a WinEvent: ${(err as Error).message}`, { cause: err });
  }
  if (!CAMPAIGN_ID_PATTERN.test(w.campaignId)) throw new Error('bad campaign_id');
  if (!PACKET_ID.test(w.packetId)) throw new Error('bad packet_id');
  if (!USER_ID_PATTERN.test(w.userId)) throw new Error('bad user_id');
  if (w.amountCents < 1n || w.amountCents > MAX_AMOUNT) throw new Error('amount_cents out of range');
  if (w.wonAtMs <= 0n || w.wonAtMs > MAX_WON_AT_MS) throw new Error('bad won_at_ms');
  if (w.requestId.length > 128) throw new Error('request_id too long');
  return w;
}

/** Best-effort ids of a message that failed validation, for counting (and logging) it. */
export function peekIds(body: Buffer): { campaignId: string; packetId: string; traceId: string } {
  try {
    const w = WinEvent.decode(body);
    return { campaignId: w.campaignId, packetId: w.packetId, traceId: traceForLog(w.traceId) };
  } catch {
    return { campaignId: '', packetId: '', traceId: '' };
  }
}

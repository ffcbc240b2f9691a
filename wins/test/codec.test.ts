/** The WinEvent codec: what the relay writes, gift-svc reads back; what gift-svc refuses. */
import { describe, expect, it } from 'vitest';
import { decodeWin, encodeWin, peekIds, type WinEvent } from '../src/index.js';

const win: WinEvent = {
  campaignId: 'c1',
  packetId: 'AbCdEfGhIjKlMnOp',
  userId: 'user@example.com',
  amountCents: 123_456n,
  requestId: 'req-1',
  wonAtMs: 1_800_000_000_000n,
  streamId: '1800000000000-0',
  traceId: 'edge-req-1',
};

describe('WinEvent codec', () => {
  it('round-trips every field, 64-bit values exactly', () => {
    expect(decodeWin(encodeWin(win))).toEqual(win);
    const big = { ...win, amountCents: 1_000_000_000_000n };
    expect(decodeWin(encodeWin(big)).amountCents).toBe(1_000_000_000_000n);
  });

  it.each([
    ['an empty campaign id', { campaignId: '' }, /campaign_id/],
    ['a packet id with a pipe', { packetId: 'a|b' }, /packet_id/],
    ['a user id with a space', { userId: 'a b' }, /user_id/],
    ['a zero amount', { amountCents: 0n }, /amount_cents/],
    ['a negative amount', { amountCents: -1n }, /amount_cents/],
    ['an amount over the maximum', { amountCents: 1_000_000_000_001n }, /amount_cents/],
    ['no win time', { wonAtMs: 0n }, /won_at_ms/],
    ['a win time past year 9999', { wonAtMs: 253_402_300_800_000n }, /won_at_ms/],
    ['a request id over 128 characters', { requestId: 'r'.repeat(129) }, /request_id/],
  ])('refuses %s', (_, change, why) => {
    expect(() => decodeWin(encodeWin({ ...win, ...change }))).toThrow(why);
  });

  it('refuses bytes that are not a WinEvent, and still names what it can', () => {
    expect(() => decodeWin(Buffer.from([0xff, 0xff, 0xff, 0xff]))).toThrow(/not a WinEvent/);
    expect(peekIds(Buffer.from([0xff, 0xff]))).toEqual({ campaignId: '', packetId: '', traceId: '' });
    expect(peekIds(encodeWin({ ...win, amountCents: -5n }))).toEqual({
      campaignId: 'c1',
      packetId: win.packetId,
      traceId: 'edge-req-1',
    });
  });

  it('never refuses a win for its trace id: a long one is accepted, and bounded when logged', () => {
    const long = 't'.repeat(5000);
    expect(decodeWin(encodeWin({ ...win, traceId: long })).traceId).toBe(long);
    expect(peekIds(encodeWin({ ...win, amountCents: 0n, traceId: long })).traceId).toHaveLength(128);
    // a win relayed before trace ids existed
    expect(decodeWin(encodeWin({ ...win, traceId: '' })).traceId).toBe('');
  });
});

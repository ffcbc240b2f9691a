/** Splitting a campaign's total into packets, in integer cents. */
import { createCipheriv, createHmac, randomBytes, randomInt } from 'node:crypto';

export type SplitMode = 'RANDOM' | 'EQUAL';

/** Largest total accepted (¥10 billion): keeps every sum an exact JS integer. */
export const MAX_TOTAL_CENTS = 1_000_000_000_000;
/** Largest packet count of one campaign. */
export const MAX_PACKETS = 10_000_000;

/**
 * Splits `total` cents into `count` amounts, each at least 1 cent, summing exactly to `total`.
 * RANDOM is the double-average method: with m cents left for n packets, the next amount is
 * uniform in [1, floor(2m/n) - 1] (the last packet takes what is left), so every amount's
 * expectation is the running average and no packet can starve the rest.
 */
export function splitAmounts(
  total: number,
  count: number,
  mode: SplitMode,
  rand: (min: number, maxExclusive: number) => number = randomInt,
): number[] {
  if (!Number.isSafeInteger(total) || !Number.isSafeInteger(count) || count < 1 || total < count) {
    throw new RangeError(`cannot split ${total} cents into ${count} packets`);
  }
  const out = new Array<number>(count);
  if (mode === 'EQUAL') {
    const base = Math.floor(total / count);
    const extra = total - base * count;
    for (let i = 0; i < count; i++) out[i] = base + (i < extra ? 1 : 0);
    return out;
  }
  let left = total;
  for (let i = 0; i < count - 1; i++) {
    const n = count - i;
    // floor(2m/n) - 1 never exceeds m - (n - 1) while m >= n, which each step preserves.
    const max = Math.max(1, Math.floor((2 * left) / n) - 1);
    const amount = max === 1 ? 1 : rand(1, max + 1);
    out[i] = amount;
    left -= amount;
  }
  out[count - 1] = left;
  return out;
}

/** Spreads `count` packets over `batches` batches, the first ones taking the remainder. */
export function batchSizes(count: number, batches: number): number[] {
  const base = Math.floor(count / batches);
  const extra = count - base * batches;
  return Array.from({ length: batches }, (_, i) => base + (i < extra ? 1 : 0));
}

/**
 * Packet ids double as redeemable codes: 96 random bits in base64url (16 characters),
 * drawn in one call for the whole campaign; a repeat (never seen in practice) is redrawn.
 * `random` is node's randomBytes; tests pass a source that repeats itself.
 */
export function packetIds(count: number, random: (size: number) => Buffer = randomBytes): string[] {
  const bytes = random(ID_BYTES * count);
  redrawRepeats(bytes, count, random);
  // 12 bytes are exactly 16 base64 characters: one encoding, then 16-character slices
  const all = bytes.toString('base64url');
  const ids = new Array<string>(count);
  for (let i = 0; i < count; i++) ids[i] = all.slice(16 * i, 16 * i + 16);
  return ids;
}

const ID_BYTES = 12;

/**
 * Redraws any id equal to an earlier one. A Set of a million strings took ~70% of creating a
 * campaign; this sorts the ids' first 48 bits as doubles instead (native, no strings) and only
 * compares whole ids whose prefixes meet (about 1 in 500 campaigns of a million has such a pair).
 */
function redrawRepeats(bytes: Buffer, count: number, random: (size: number) => Buffer): void {
  for (;;) {
    const prefix = new Float64Array(count);
    for (let i = 0; i < count; i++) prefix[i] = bytes.readUIntBE(ID_BYTES * i, 6);
    const sorted = prefix.slice().sort();
    const shared = new Set<number>();
    for (let i = 1; i < count; i++) if (sorted[i] === sorted[i - 1]) shared.add(sorted[i]!);
    if (shared.size === 0) return;
    const seen = new Set<string>();
    let redrawn = false;
    for (let i = 0; i < count; i++) {
      if (!shared.has(prefix[i]!)) continue;
      const at = ID_BYTES * i;
      const id = bytes.toString('hex', at, at + ID_BYTES);
      if (seen.has(id)) {
        random(ID_BYTES).copy(bytes, at);
        redrawn = true;
      } else seen.add(id);
    }
    // a redrawn id may itself repeat another (or share a prefix with a repeat): check again
    if (!redrawn) return;
  }
}

/** Bytes of a campaign's packet seed. */
export const SEED_BYTES = 32;

/** The packets of a campaign, index k = the k-th packet of the campaign (batch order). */
export interface Packets {
  ids: string[];
  amounts: number[];
}

/**
 * An endless deterministic byte stream: AES-256-CTR over zeros, keyed by HMAC-SHA256(seed,
 * label). One seed gives independent streams per label (ids, amounts), so the amounts never
 * depend on how many bytes the ids took (a redrawn id).
 */
export function seededBytes(seed: Buffer, label: string): (size: number) => Buffer {
  const key = createHmac('sha256', seed).update(label).digest();
  // A key is used for one stream only, so a zero IV (the counter's start) is safe.
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return (size) => cipher.update(Buffer.alloc(size));
}

/** Keystream drawn ahead for the amounts: few cipher calls, no per-draw allocation. */
const AMOUNT_CHUNK = 48 * 4096;
const TWO_48 = 2 ** 48;

/**
 * Uniform integers in [min, maxExclusive) from a byte stream: 48 bits a draw, rejection
 * sampling above the largest multiple of the range (no modulo bias, no floats: every value is
 * an exact integer below 2^53). Ranges are at most MAX_TOTAL_CENTS < 2^40.
 */
export function seededInts(bytes: (size: number) => Buffer): (min: number, maxExclusive: number) => number {
  let buf = bytes(AMOUNT_CHUNK);
  let at = 0;
  return (min, maxExclusive) => {
    const range = maxExclusive - min;
    const limit = TWO_48 - (TWO_48 % range);
    for (;;) {
      if (at === buf.length) {
        buf = bytes(AMOUNT_CHUNK);
        at = 0;
      }
      const x = buf.readUIntBE(at, 6);
      at += 6;
      if (x < limit) return min + (x % range);
    }
  };
}

/**
 * The packets of a campaign derived from its seed: the same ids and amounts every time, so
 * MySQL's copy of the seed is enough to rebuild every packet exactly (RestoreCampaign).
 */
export function packetsFromSeed(seed: Buffer, total: number, count: number, mode: SplitMode): Packets {
  if (seed.length !== SEED_BYTES) throw new RangeError(`a packet seed is ${SEED_BYTES} bytes, not ${seed.length}`);
  return {
    ids: packetIds(count, seededBytes(seed, 'ids')),
    amounts: splitAmounts(total, count, mode, seededInts(seededBytes(seed, 'amounts'))),
  };
}

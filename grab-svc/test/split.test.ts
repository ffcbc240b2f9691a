import { randomBytes, randomInt } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CAMPAIGN_ID_PATTERN } from '@redpacket/lib';
import { newCampaignId } from '../src/campaigns.js';
import {
  batchSizes,
  packetIds,
  packetsFromSeed,
  SEED_BYTES,
  seededBytes,
  seededInts,
  splitAmounts,
} from '../src/split.js';

describe('splitAmounts', () => {
  it('RANDOM: exact sum, every amount >= 1 cent, each within the double-average bound, over thousands of campaigns', () => {
    const problems: string[] = [];
    for (let trial = 0; trial < 3000; trial++) {
      const count = randomInt(1, 400);
      const total = count + randomInt(0, 200_000);
      const amounts = splitAmounts(total, count, 'RANDOM');
      if (amounts.length !== count) problems.push(`${total}/${count}: ${amounts.length} amounts`);
      let left = total;
      for (let i = 0; i < count; i++) {
        const a = amounts[i]!;
        const n = count - i;
        const bound = n > 1 ? Math.max(1, Math.floor((2 * left) / n) - 1) : left;
        if (!Number.isInteger(a) || a < 1 || a > bound)
          problems.push(`${total}/${count} #${i}: ${a} not in [1, ${bound}]`);
        left -= a;
      }
      if (left !== 0) problems.push(`${total}/${count}: sum off by ${left}`);
    }
    expect(problems).toEqual([]);
  });

  it('RANDOM: tight totals (1 cent a packet) and large campaigns stay exact', () => {
    expect(splitAmounts(5, 5, 'RANDOM')).toEqual([1, 1, 1, 1, 1]);
    const big = splitAmounts(1_000_000_00, 1_000_000, 'RANDOM');
    expect(big.reduce((a, b) => a + b, 0)).toBe(1_000_000_00);
    expect(Math.min(...big.slice(0, 100_000))).toBeGreaterThanOrEqual(1);
  });

  it('RANDOM: is actually random (amounts vary, the mean is the average)', () => {
    const amounts = splitAmounts(1_000_000, 10_000, 'RANDOM');
    expect(new Set(amounts).size).toBeGreaterThan(100);
    const firstHalfMean = amounts.slice(0, 5000).reduce((a, b) => a + b, 0) / 5000;
    expect(firstHalfMean).toBeGreaterThan(90);
    expect(firstHalfMean).toBeLessThan(110);
  });

  it('EQUAL: spreads the remainder one cent at a time', () => {
    expect(splitAmounts(10, 3, 'EQUAL')).toEqual([4, 3, 3]);
    expect(splitAmounts(9, 3, 'EQUAL')).toEqual([3, 3, 3]);
    const a = splitAmounts(1_000_003, 1000, 'EQUAL');
    expect(a.reduce((x, y) => x + y, 0)).toBe(1_000_003);
    expect(Math.max(...a) - Math.min(...a)).toBe(1);
  });

  it('refuses impossible splits', () => {
    expect(() => splitAmounts(2, 3, 'RANDOM')).toThrow(RangeError);
    expect(() => splitAmounts(10, 0, 'EQUAL')).toThrow(RangeError);
  });
});

describe('batchSizes and packetIds', () => {
  it('spreads packets over batches with the remainder first', () => {
    expect(batchSizes(10, 3)).toEqual([4, 3, 3]);
    expect(batchSizes(3, 3)).toEqual([1, 1, 1]);
  });

  it('makes unique 16-character url-safe codes', () => {
    const ids = packetIds(50_000);
    expect(new Set(ids).size).toBe(50_000);
    for (const id of ids.slice(0, 1000)) expect(id).toMatch(/^[A-Za-z0-9_-]{16}$/);
  });

  it('redraws repeated ids, and ids that only share their first 48 bits stay', () => {
    // a source whose first draw repeats three ids and has two more sharing a 6-byte prefix
    const id = (hex: string): Buffer => Buffer.from(hex, 'hex');
    const a = id('0102030405060708090a0b0c');
    const b = id('0102030405061111111111ff'); // a's prefix, another id
    const c = id('ffeeddccbbaa998877665544');
    let draws = 0;
    const random = (size: number): Buffer => {
      draws++;
      if (draws === 1) return Buffer.concat([a, b, a, c, a, c]);
      // the first redraw repeats c again; later ones are fresh
      return draws === 2 ? Buffer.from(c) : randomBytes(size);
    };
    const ids = packetIds(6, random);
    expect(new Set(ids).size).toBe(6);
    expect(ids[0]).toBe(a.toString('base64url'));
    expect(ids[1]).toBe(b.toString('base64url'));
    expect(ids.filter((x) => x === c.toString('base64url'))).toHaveLength(1);
    // ids 2, 4 and 5 repeated a or c: redrawn; id 2's redraw was c, so the second pass found
    // c twice and redrew one more (draws: the first, 3 redraws, 1 more)
    expect(draws).toBe(5);
    for (const x of ids) expect(x).toMatch(/^[A-Za-z0-9_-]{16}$/);
  });
});

describe('packetsFromSeed', () => {
  it('derives the same ids and amounts from one seed every time, and other ones from another seed', () => {
    const seed = randomBytes(SEED_BYTES);
    const a = packetsFromSeed(seed, 1_000_000, 5000, 'RANDOM');
    const b = packetsFromSeed(Buffer.from(seed), 1_000_000, 5000, 'RANDOM');
    expect(b).toEqual(a);
    const other = packetsFromSeed(randomBytes(SEED_BYTES), 1_000_000, 5000, 'RANDOM');
    expect(other.ids.filter((id, i) => id === a.ids[i])).toEqual([]);
    expect(other.amounts).not.toEqual(a.amounts);
    expect(() => packetsFromSeed(randomBytes(16), 100, 10, 'RANDOM')).toThrow(RangeError);
  });

  it('keeps the split rules (exact sum, >= 1 cent, double-average bound) and unique ids, over many seeds', () => {
    const problems: string[] = [];
    for (let trial = 0; trial < 300; trial++) {
      const count = randomInt(1, 2000);
      const total = count + randomInt(0, 500_000);
      const { ids, amounts } = packetsFromSeed(randomBytes(SEED_BYTES), total, count, 'RANDOM');
      if (new Set(ids).size !== count || ids.some((id) => !/^[A-Za-z0-9_-]{16}$/.test(id)))
        problems.push(`${total}/${count}: ids not 16 unique characters`);
      let left = total;
      for (let i = 0; i < count; i++) {
        const n = count - i;
        const bound = n > 1 ? Math.max(1, Math.floor((2 * left) / n) - 1) : left;
        if (!Number.isInteger(amounts[i]) || amounts[i]! < 1 || amounts[i]! > bound)
          problems.push(`${total}/${count} #${i}: ${amounts[i]} not in [1, ${bound}]`);
        left -= amounts[i]!;
      }
      if (left !== 0) problems.push(`${total}/${count}: sum off by ${left}`);
    }
    expect(problems).toEqual([]);
    const equal = packetsFromSeed(randomBytes(SEED_BYTES), 1003, 10, 'EQUAL').amounts;
    expect(equal).toEqual([101, 101, 101, 100, 100, 100, 100, 100, 100, 100]);
  });

  it('draws uniform integers without bias across the whole range', () => {
    const draw = seededInts(seededBytes(randomBytes(SEED_BYTES), 'test'));
    const counts = new Array<number>(7).fill(0);
    for (let i = 0; i < 70_000; i++) counts[draw(3, 10) - 3]!++;
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(600);
  });
});

describe('newCampaignId', () => {
  it('is a valid campaign id that never starts with "-" (it would read as a command-line option)', () => {
    // 64 draws see a leading '-' with probability 1 - (63/64)^64 ≈ 63% if not excluded; 5,000 make it certain.
    const ids = Array.from({ length: 5000 }, () => newCampaignId());
    for (const id of ids) {
      expect(id).toMatch(CAMPAIGN_ID_PATTERN);
      expect(id[0]).not.toBe('-');
    }
    expect(new Set(ids).size).toBe(ids.length);
  });
});

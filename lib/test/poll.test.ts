/** withTimeout: the promise's own outcome while in time, a rejection naming what was late otherwise. */
import { describe, expect, it } from 'vitest';
import { withTimeout } from '../src/index.js';

describe('withTimeout', () => {
  it('passes through a value or a rejection that comes in time', async () => {
    await expect(withTimeout(Promise.resolve(42), 1000, 'answer')).resolves.toBe(42);
    await expect(withTimeout(Promise.reject(new Error('broken')), 1000, 'answer')).rejects.toThrow('broken');
  });

  it('rejects with what was late and the limit once the time is up', async () => {
    const never = new Promise<number>(() => undefined);
    const started = Date.now();
    await expect(withTimeout(never, 50, 'publisher confirms')).rejects.toThrow(
      'publisher confirms not received within 50 ms',
    );
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
  });
});

/** Signing many user tokens at once (bench, demo, `redpacket token --count`). */
import type { TokenSigner } from '@redpacket/lib';

/** Signs `n` user tokens ("prefix0".."prefix{n-1}"), a few hundred at a time. */
export async function signUserTokens(
  signer: TokenSigner,
  prefix: string,
  n: number,
  ttlSeconds = 3600,
): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i += 500) {
    const chunk = Array.from({ length: Math.min(500, n - i) }, (_, j) =>
      signer.sign({ userId: `${prefix}${i + j}`, ttlSeconds, openedAtMs: Date.now() - 3_600_000 }),
    );
    out.push(...(await Promise.all(chunk)));
  }
  return out;
}

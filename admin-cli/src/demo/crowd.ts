/**
 * The gala crowd: users arrive in waves at each batch release, losers who care press again at
 * the next batch, and at the end some winners press again (a network retry with the same
 * request id, or an impatient second click). Every answer is read back and checked.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { createRedPacketClient, RedPacketError, type RedPacketClient } from '@redpacket/client';
import type { TlsMaterial } from '@redpacket/lib';
import { percentile } from '@redpacket/loadgen';
import { Outcome, outcomeToJSON, type GrabResponse } from '@redpacket/proto';

export interface CrowdOptions {
  /** grab-svc's host:port. */
  address: string;
  /** mTLS material when grab-svc serves TLS. */
  tls?: TlsMaterial;
  campaignId: string;
  userIds: string[];
  tokens: string[];
  batches: number;
  /** When each batch opens (ms since epoch). */
  releaseAtMs: number[];
  concurrency: number;
  connections: number;
  /** Early birds pressing before the start, as a share of the crowd. */
  earlyShare: number;
  /** Share of losers who press again at each later batch. */
  persistentShare: number;
  /** Share of winners who retry at the end. */
  winnerRetryShare: number;
  onWave?: (w: WaveResult) => void;
}

export interface WaveResult {
  name: string;
  calls: number;
  startedAtMs: number;
  ms: number;
  grabsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  outcomes: Record<string, number>;
  errors: number;
}

export interface Win {
  packetId: string;
  amountCents: bigint;
  requestId: string;
}

export interface CrowdResult {
  waves: WaveResult[];
  /** Winner index -> the win from the user's own WON answer. */
  wins: Map<number, Win>;
  outcomes: Record<string, number>;
  errors: Record<string, number>;
  calls: number;
  /** Sorted latencies of every call, ms. */
  latenciesMs: Float64Array;
  /** From the first call of the first release wave to the last answer. */
  grabSeconds: number;
  violations: string[];
}

interface Press {
  user: number;
  requestId: string;
}

/** A stable pseudo-random number in [0, 1) per user and purpose, so runs are comparable. */
const share = (user: number, salt: number): number => (((user + 1) * 2654435761 + salt * 40503) % 1000) / 1000;

const sleepUntil = (t: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, t - Date.now())));

function merge(arrays: Float64Array[]): Float64Array {
  const all = new Float64Array(arrays.reduce((n, a) => n + a.length, 0));
  let o = 0;
  for (const a of arrays) {
    all.set(a, o);
    o += a.length;
  }
  return all.sort();
}

/** One wave's calls: each press's answer (absent when the call failed after its retries). */
interface PressReport {
  replies: (GrabResponse | undefined)[];
  /** Sorted latencies, ms (retries included). */
  latenciesMs: Float64Array;
  errors: Record<string, number>;
  totalMs: number;
}

/** The user's token for the calls made inside als.run(token, ...): one client serves the crowd. */
const userToken = new AsyncLocalStorage<string>();

/**
 * Grabs for every press through @redpacket/client (its safe retries: the same request id), with
 * `concurrency` calls in flight spread over the clients. Measured no slower than raw HTTP/2 frames.
 */
async function pressAll(clients: RedPacketClient[], o: CrowdOptions, presses: Press[]): Promise<PressReport> {
  const replies: (GrabResponse | undefined)[] = [];
  const latenciesMs = new Float64Array(presses.length);
  const errors: Record<string, number> = {};
  let next = 0;
  const t0 = performance.now();
  const worker = async (client: RedPacketClient): Promise<void> => {
    for (let i = next++; i < presses.length; i = next++) {
      const p = presses[i]!;
      const s0 = performance.now();
      try {
        replies[i] = await userToken.run(o.tokens[p.user]!, () =>
          client.grab({ campaignId: o.campaignId, requestId: p.requestId }),
        );
      } catch (err) {
        const k = err instanceof RedPacketError ? `${err.code}: ${err.details}` : String(err);
        errors[k] = (errors[k] ?? 0) + 1;
      }
      latenciesMs[i] = performance.now() - s0;
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, (_, w) => worker(clients[w % clients.length]!)));
  return { replies, latenciesMs: latenciesMs.sort(), errors, totalMs: performance.now() - t0 };
}

export async function runCrowd(o: CrowdOptions): Promise<CrowdResult> {
  // one HTTP/2 connection per client: grpc-js would share one between same-address channels
  const clients = Array.from({ length: o.connections }, () =>
    createRedPacketClient({
      address: o.address,
      tls: o.tls,
      tokenProvider: () => userToken.getStore() ?? '',
      channelOptions: { 'grpc.use_local_subchannel_pool': 1 },
    }),
  );
  try {
    return await crowd(o, clients);
  } finally {
    for (const c of clients) c.close();
  }
}

async function crowd(o: CrowdOptions, clients: RedPacketClient[]): Promise<CrowdResult> {
  const n = o.userIds.length;
  const wins = new Map<number, Win>();
  const outcomes: Record<string, number> = {};
  const errors: Record<string, number> = {};
  const violations: string[] = [];
  const waves: WaveResult[] = [];
  const latencies: Float64Array[] = [];
  let firstCallMs = 0;
  let lastAnswerMs = 0;

  const wave = async (name: string, presses: Press[]): Promise<void> => {
    if (presses.length === 0) return;
    const startedAtMs = Date.now();
    const r = await pressAll(clients, o, presses);
    lastAnswerMs = Date.now();
    latencies.push(r.latenciesMs);
    for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v;
    const waveOutcomes: Record<string, number> = {};
    presses.forEach((p, i) => {
      const res = r.replies[i];
      if (!res) return;
      const name = outcomeToJSON(res.outcome);
      waveOutcomes[name] = (waveOutcomes[name] ?? 0) + 1;
      outcomes[name] = (outcomes[name] ?? 0) + 1;
      const had = wins.get(p.user);
      const who = o.userIds[p.user];
      if (res.outcome === Outcome.WON) {
        if (!had) wins.set(p.user, { packetId: res.packetId, amountCents: res.amountCents, requestId: p.requestId });
        else if (had.requestId !== p.requestId) violations.push(`${who} won twice (${had.packetId}, ${res.packetId})`);
        else if (had.packetId !== res.packetId || had.amountCents !== res.amountCents) {
          violations.push(`${who}: a retry of ${p.requestId} answered differently`);
        }
      } else if (res.outcome === Outcome.ALREADY_GRABBED) {
        if (had && (had.packetId !== res.packetId || had.amountCents !== res.amountCents)) {
          violations.push(`${who}: ALREADY_GRABBED names another packet than the user's win`);
        }
      }
    });
    const errorCount = Object.values(r.errors).reduce((a, b) => a + b, 0);
    const w: WaveResult = {
      name,
      calls: presses.length,
      startedAtMs,
      ms: Math.round(r.totalMs),
      grabsPerSecond: Math.round(presses.length / Math.max(r.totalMs / 1000, 0.001)),
      p50Ms: percentile(r.latenciesMs, 50),
      p99Ms: percentile(r.latenciesMs, 99),
      outcomes: waveOutcomes,
      errors: errorCount,
    };
    waves.push(w);
    o.onWave?.(w);
  };

  // arrivals: half the crowd at the first release, the rest spread over the later ones
  const arrivalBatch = (u: number): number =>
    o.batches === 1 ? 0 : u < n / 2 ? 0 : 1 + Math.floor(((u - n / 2) / (n / 2)) * (o.batches - 1));
  const pressed = new Set<number>();

  const early: Press[] = [];
  for (let u = 0; u < n; u++) if (share(u, 1) < o.earlyShare) early.push({ user: u, requestId: `early-${u}` });
  await wave('early birds, before the start', early);

  for (let b = 0; b < o.batches; b++) {
    await sleepUntil(o.releaseAtMs[b]!);
    const presses: Press[] = [];
    for (let u = 0; u < n; u++) {
      const arrives = arrivalBatch(u) === b;
      const retries = pressed.has(u) && !wins.has(u) && share(u, 2) < o.persistentShare;
      if (arrives || retries) presses.push({ user: u, requestId: `b${b}-${u}` });
      if (arrives) pressed.add(u);
    }
    if (b === 0) firstCallMs = Date.now();
    // the wave starts when the batch opens or, on a slow host, when the previous wave is done
    const opens = ((o.releaseAtMs[b]! - o.releaseAtMs[0]!) / 1000).toFixed(1);
    await wave(`batch ${b + 1} (opens at +${opens} s)`, presses);
  }

  // the tail: winners retry (same request id = a network retry; new id = a second click),
  // and the persistent losers press one last time
  const tail: Press[] = [];
  for (const [u, w] of wins) {
    const s = share(u, 3);
    if (s < o.winnerRetryShare / 2) tail.push({ user: u, requestId: w.requestId });
    else if (s < o.winnerRetryShare) tail.push({ user: u, requestId: `again-${u}` });
  }
  for (const u of pressed)
    if (!wins.has(u) && share(u, 2) < o.persistentShare) tail.push({ user: u, requestId: `last-${u}` });
  await wave('retries after the last batch', tail);

  const packets = new Set<string>();
  for (const [u, w] of wins) {
    if (packets.has(w.packetId)) violations.push(`packet ${w.packetId} was won twice (again by ${o.userIds[u]})`);
    packets.add(w.packetId);
  }
  const all = merge(latencies);
  return {
    waves,
    wins,
    outcomes,
    errors,
    calls: waves.reduce((s, w) => s + w.calls, 0),
    latenciesMs: all,
    grabSeconds: (lastAnswerMs - firstCallMs) / 1000,
    violations,
  };
}

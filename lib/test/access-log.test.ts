/**
 * implement()'s access log and request ids, through a real server and a real client: one line per
 * call with method, code, duration, request id and peer, never a token; the request id the edge
 * sent (or a fresh one when it is missing or unusable) is what the handler sees and what the
 * caller gets back as `x-request-id` trailing metadata (but from a hot path, logged below info).
 */
import { Metadata, status } from '@grpc/grpc-js';
import { AccountServiceClient, AccountServiceService, type ImportUsersResponse } from '@redpacket/proto';
import { credentials, type ServerReadableStream, type sendUnaryData } from '@grpc/grpc-js';
import { pino, type Level } from 'pino';
import { describe, expect, it } from 'vitest';
import { implement, isValidRequestId, REQUEST_ID_HEADER, requestIdOf, startServer } from '../src/index.js';
import { bearer, call, callWithTrailers, grpcError } from '../src/testing.js';
import { startFakeGrab } from './fake-grab.js';

type Line = Record<string, unknown> & { msg: string; level: number };

function capture(level: Level): { log: pino.Logger; lines: Line[] } {
  const lines: Line[] = [];
  const log = pino({ level }, { write: (s: string) => void lines.push(JSON.parse(s) as Line) });
  return { log, lines };
}

const GRAB = '/redpacket.v1.GrabService/Grab';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
// A token-shaped secret: it must appear in no log line.
const TOKEN = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2VjcmV0LXNpZ25hdHVyZS1kby1ub3QtbG9n';

function md(requestId?: string): Metadata {
  const m = bearer(TOKEN);
  if (requestId !== undefined) m.set(REQUEST_ID_HEADER, requestId);
  return m;
}

describe('access log', () => {
  it('writes one info line per call: method, code, ms, request id, peer; no token', async () => {
    const { log, lines } = capture('info');
    const { client, stop } = await startFakeGrab(log);
    try {
      const res = await call(client.grab, client, { campaignId: 'c1', requestId: '' }, md('abc'));
      // the handler saw the edge's request id
      expect(res.packetId).toBe('abc');
      const bad = await grpcError(call(client.grab, client, { campaignId: 'bad', requestId: '' }, md('req-2')));
      expect(bad.code).toBe(status.INVALID_ARGUMENT);

      const rpc = lines.filter((l) => l.msg === 'rpc');
      expect(rpc).toHaveLength(2);
      expect(rpc[0]).toMatchObject({ level: 30, method: GRAB, code: 'OK', requestId: 'abc' });
      expect(rpc[1]).toMatchObject({ level: 30, method: GRAB, code: 'INVALID_ARGUMENT', requestId: 'req-2' });
      for (const l of rpc) {
        expect(typeof l['ms']).toBe('number');
        expect(l['ms'] as number).toBeGreaterThanOrEqual(0);
        expect(l['ms'] as number).toBeLessThan(5000);
        expect(String(l['peer'])).toMatch(/127\.0\.0\.1:\d+/);
      }
      const all = lines.map((l) => JSON.stringify(l)).join('\n');
      expect(all).not.toContain(TOKEN);
      expect(all).not.toContain('c2VjcmV0'); // not even the signature part
      expect(all.toLowerCase()).not.toContain('authorization');
    } finally {
      await stop();
    }
  });

  it('replaces a missing or unusable x-request-id with a fresh UUID, and never logs the bad one', async () => {
    const { log, lines } = capture('info');
    const { client, stop } = await startFakeGrab(log);
    // (control and non-ASCII characters never get through grpc-js's client: see the unit test below)
    const bad = ['x'.repeat(129), 'has space', ' '];
    try {
      const seen: string[] = [];
      for (const b of [...bad, undefined]) {
        const res = await call(client.grab, client, { campaignId: 'c1', requestId: '' }, md(b));
        seen.push(res.packetId);
      }
      for (const id of seen) expect(id).toMatch(UUID);
      expect(new Set(seen).size).toBe(seen.length);
      // the line carries the id the handler saw
      expect(lines.filter((l) => l.msg === 'rpc').map((l) => l['requestId'])).toEqual(seen);
      const all = lines.map((l) => JSON.stringify(l)).join('\n');
      expect(all).not.toContain('x'.repeat(129));
      expect(all).not.toContain('has space');
      // at the limit and printable: kept as it is
      const edge = `${'y'.repeat(127)}~`;
      expect((await call(client.grab, client, { campaignId: 'c1', requestId: '' }, md(edge))).packetId).toBe(edge);
    } finally {
      await stop();
    }
  });

  it('sends the request id back as trailing metadata, once, on answers and on errors', async () => {
    const { log, lines } = capture('info');
    const { client, stop } = await startFakeGrab(log);
    const grab = (campaignId: string, requestId?: string) =>
      callWithTrailers(client.grab, client, { campaignId, requestId: '' }, md(requestId));
    try {
      // given by the edge: the same id comes back, on an answer and on both kinds of error
      for (const [campaign, code] of [
        ['c1', undefined],
        ['bad', status.INVALID_ARGUMENT],
        ['bug', status.INTERNAL],
      ] as const) {
        const r = await grab(campaign, `echo-${campaign}`);
        expect(r.error?.code).toBe(code);
        expect(r.trailers.get(REQUEST_ID_HEADER)).toEqual([`echo-${campaign}`]);
      }
      // none given, or an unusable one: the generated id comes back, the one the handler saw and
      // the access line has; the unusable one is not echoed
      const fresh = await grab('c1');
      const replaced = await grab('c1', 'has space');
      const failed = await grab('bad');
      const ids = [fresh, replaced, failed].map((r) => r.trailers.get(REQUEST_ID_HEADER));
      for (const id of ids) expect(id).toEqual([expect.stringMatching(UUID)]);
      expect(fresh.response?.packetId).toBe(ids[0]?.[0]);
      expect(replaced.response?.packetId).toBe(ids[1]?.[0]);
      expect(failed.error?.code).toBe(status.INVALID_ARGUMENT);
      expect(lines.filter((l) => l.msg === 'rpc').map((l) => l['requestId'])).toEqual([
        'echo-c1',
        'echo-bad',
        'echo-bug',
        ...ids.map((id) => id?.[0]),
      ]);
    } finally {
      await stop();
    }
  });

  it('an unhandled error is logged with the same request id as the access line', async () => {
    const { log, lines } = capture('info');
    const { client, stop } = await startFakeGrab(log);
    try {
      const err = await grpcError(call(client.grab, client, { campaignId: 'bug', requestId: '' }, md('trace-bug')));
      expect(err.code).toBe(status.INTERNAL);
      expect(lines.find((l) => l.msg === 'unhandled error in handler')).toMatchObject({ requestId: 'trace-bug' });
      expect(lines.find((l) => l.msg === 'rpc')).toMatchObject({ code: 'INTERNAL', requestId: 'trace-bug' });
    } finally {
      await stop();
    }
  });

  it('a method logged at debug (the grab) writes nothing at info, its line at debug, and sends no id back', async () => {
    const quiet = capture('info');
    const a = await startFakeGrab(quiet.log, { accessLog: { grab: 'debug' } });
    try {
      const res = await callWithTrailers(a.client.grab, a.client, { campaignId: 'c1', requestId: '' }, md('q1'));
      // the request id is there for the handler all the same
      expect(res.response?.packetId).toBe('q1');
      expect(quiet.lines.filter((l) => l.msg === 'rpc')).toEqual([]);
      // a hot path does not send it back, on an answer or an error
      expect(res.trailers.get(REQUEST_ID_HEADER)).toEqual([]);
      const bad = await callWithTrailers(a.client.grab, a.client, { campaignId: 'bad', requestId: '' }, md('q3'));
      expect(bad.error?.code).toBe(status.INVALID_ARGUMENT);
      expect(bad.trailers.get(REQUEST_ID_HEADER)).toEqual([]);
    } finally {
      await a.stop();
    }
    const loud = capture('debug');
    const b = await startFakeGrab(loud.log, { accessLog: { grab: 'debug' } });
    try {
      await call(b.client.grab, b.client, { campaignId: 'c1', requestId: '' }, md('q2'));
      expect(loud.lines.filter((l) => l.msg === 'rpc')).toEqual([
        expect.objectContaining({ level: 20, method: GRAB, code: 'OK', requestId: 'q2' }),
      ]);
    } finally {
      await b.stop();
    }
  });

  it('a client-streaming call (ImportUsers) gets its line, and its id back, when it answers', async () => {
    const { log, lines } = capture('info');
    const unused = async (): Promise<never> => {
      throw new Error('not used');
    };
    const others = Object.fromEntries(Object.keys(AccountServiceService).map((k) => [k, unused]));
    const impl = implement(
      AccountServiceService,
      {
        ...others,
        importUsers(
          stream: ServerReadableStream<unknown, ImportUsersResponse>,
          cb: sendUnaryData<ImportUsersResponse>,
        ): void {
          let n = 0;
          stream.on('data', () => n++);
          stream.on('end', () => {
            if (n === 0) cb({ code: status.INVALID_ARGUMENT, details: 'no users' });
            else cb(null, { received: BigInt(n), created: BigInt(n), duplicates: 0n, rejected: 0n, errors: [] });
          });
        },
      } as never,
      log,
    );
    const server = await startServer({
      services: [{ name: 'redpacket.v1.AccountService', definition: AccountServiceService, implementation: impl }],
      host: '127.0.0.1',
      port: 0,
      log,
    });
    const client = new AccountServiceClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
    const importUsers = (n: number, id: string): Promise<{ err: { code: number } | null; echoed: unknown }> =>
      new Promise((resolve) => {
        const s = client.importUsers(md(id), (err) =>
          err ? resolve({ err, echoed: err.metadata.get(REQUEST_ID_HEADER) }) : undefined,
        );
        s.on('status', (st: { metadata: Metadata; code: number }) => {
          if (st.code === status.OK) resolve({ err: null, echoed: st.metadata.get(REQUEST_ID_HEADER) });
        });
        for (let i = 0; i < n; i++) s.write({ users: [] });
        s.end();
      });
    try {
      expect(await importUsers(3, 'imp-1')).toEqual({ err: null, echoed: ['imp-1'] });
      const failed = await importUsers(0, 'imp-2');
      expect(failed.err?.code).toBe(status.INVALID_ARGUMENT);
      expect(failed.echoed).toEqual(['imp-2']);
      const rpc = lines.filter((l) => l.msg === 'rpc');
      expect(rpc).toEqual([
        expect.objectContaining({ method: '/redpacket.v1.AccountService/ImportUsers', code: 'OK', requestId: 'imp-1' }),
        expect.objectContaining({
          method: '/redpacket.v1.AccountService/ImportUsers',
          code: 'INVALID_ARGUMENT',
          requestId: 'imp-2',
        }),
      ]);
      expect(JSON.stringify(lines)).not.toContain(TOKEN);
    } finally {
      client.close();
      await server.shutdown(1000);
    }
  });
});

it('requestIdOf is stable for one call and isValidRequestId bounds what is accepted', () => {
  const c = { metadata: new Metadata() };
  const id = requestIdOf(c);
  expect(id).toMatch(UUID);
  expect(requestIdOf(c)).toBe(id);
  expect(isValidRequestId('a'.repeat(128))).toBe(true);
  expect(isValidRequestId('a'.repeat(129))).toBe(false);
  expect(isValidRequestId('')).toBe(false);
  expect(isValidRequestId('a\u0000b')).toBe(false);
  expect(isValidRequestId('tab\there')).toBe(false);
  expect(isValidRequestId('caf\u00e9')).toBe(false);
  expect(isValidRequestId('a b')).toBe(false);
  expect(isValidRequestId(Buffer.from('abc'))).toBe(false);
});

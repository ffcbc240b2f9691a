import { Writable } from 'node:stream';
import { status } from '@grpc/grpc-js';
import { Outcome } from '@redpacket/proto';
import { pino } from 'pino';
import { expect, it } from 'vitest';
import { bearer, call, grpcError } from '../src/testing.js';
import { startFakeGrab } from './fake-grab.js';

it('one error path: ServiceError keeps its code and message; anything else is logged and becomes a bare INTERNAL', async () => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  const log = pino({ level: 'info' }, sink);
  const { client, stop } = await startFakeGrab(log);
  try {
    const md = bearer('unused');
    const ok = await call(client.grab, client, { campaignId: 'c', requestId: '' }, md);
    expect(ok.outcome).toBe(Outcome.WON);

    const bad = await grpcError(call(client.grab, client, { campaignId: 'bad', requestId: '' }, md));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect(bad.details).toBe('campaign_id: is bad');

    const bug = await grpcError(call(client.grab, client, { campaignId: 'bug', requestId: '' }, md));
    expect(bug.code).toBe(status.INTERNAL);
    expect(bug.details).toBe('internal error');
    expect(bug.message).not.toContain('secret internals');
    const logged = lines.map((l) => JSON.parse(l) as { msg: string; err?: { stack?: string } });
    const entry = logged.find((l) => l.msg === 'unhandled error in handler');
    expect(entry?.err?.stack).toContain('secret internals at line 42');
  } finally {
    await stop();
  }
});

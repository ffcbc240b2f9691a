import { Writable } from 'node:stream';
import { credentials, status } from '@grpc/grpc-js';
import { GrabServiceClient, GrabServiceService, Outcome, type GrabServiceServer } from '@redpacket/proto';
import { pino } from 'pino';
import { expect, it } from 'vitest';
import { implement, invalidArgument, startServer } from '../src/index.js';
import { bearer, call, grpcError } from '../src/testing.js';

it('one error path: ServiceError keeps its code and message; anything else is logged and becomes a bare INTERNAL', async () => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  const log = pino({ level: 'info' }, sink);
  const impl = implement<GrabServiceServer>(
    GrabServiceService,
    {
      async grab(req) {
        if (req.campaignId === 'bad') throw invalidArgument('campaign_id', 'is bad');
        if (req.campaignId === 'bug') throw new TypeError('secret internals at line 42');
        return {
          outcome: Outcome.WON,
          packetId: 'p',
          amountCents: 1n,
          nextBatchAt: undefined,
          campaignId: req.campaignId,
        };
      },
      async getCampaign() {
        throw new Error('not used');
      },
    },
    log,
  );
  const server = await startServer({
    services: [{ name: 'redpacket.v1.GrabService', definition: GrabServiceService, implementation: impl }],
    host: '127.0.0.1',
    port: 0,
    log,
  });
  const client = new GrabServiceClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
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
    client.close();
    await server.shutdown(1000);
  }
});

/** A GrabService with canned answers behind the real implement() and startServer(), for lib's tests. */
import { credentials } from '@grpc/grpc-js';
import { GrabServiceClient, GrabServiceService, Outcome, type GrabServiceServer } from '@redpacket/proto';
import type { Logger } from 'pino';
import {
  implement,
  invalidArgument,
  requestIdOf,
  startServer,
  type ImplementOptions,
  type RunningServer,
} from '../src/index.js';

/**
 * campaign_id "bad" -> INVALID_ARGUMENT, "bug" -> a plain TypeError, anything else -> WON with
 * packet_id = the call's request id as the handler sees it (requestIdOf).
 */
export async function startFakeGrab(
  log: Logger,
  opts: ImplementOptions = {},
): Promise<{ server: RunningServer; client: GrabServiceClient; stop(): Promise<void> }> {
  const impl = implement<GrabServiceServer>(
    GrabServiceService,
    {
      async grab(req, call) {
        if (req.campaignId === 'bad') throw invalidArgument('campaign_id', 'is bad');
        if (req.campaignId === 'bug') throw new TypeError('secret internals at line 42');
        return {
          outcome: Outcome.WON,
          packetId: requestIdOf(call),
          amountCents: 1n,
          nextBatchAt: undefined,
          campaignId: req.campaignId,
        };
      },
      async getCampaign() {
        throw new Error('not used');
      },
      async listOpenCampaigns() {
        throw new Error('not used');
      },
      async sendPacket() {
        throw new Error('not used');
      },
    },
    log,
    opts,
  );
  const server = await startServer({
    services: [{ name: 'redpacket.v1.GrabService', definition: GrabServiceService, implementation: impl }],
    host: '127.0.0.1',
    port: 0,
    log,
  });
  const client = new GrabServiceClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
  return {
    server,
    client,
    async stop() {
      client.close();
      await server.shutdown(1000);
    },
  };
}

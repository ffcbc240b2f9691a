import { createRedPacketClient, RedPacketError } from '@redpacket/client';
import { CreateCampaignRequest, Split } from '@redpacket/proto';

/** An operator creates a campaign; a user grabs it twice; a bad id comes back as a typed error. */
export async function quickStart(address: string, adminToken: string, userToken: () => Promise<string>) {
  const admin = createRedPacketClient({ address, token: adminToken });
  // Asked before every call, so the token can be refreshed between calls.
  const user = createRedPacketClient({
    address,
    tokenProvider: userToken,
    retry: { attempts: 5, maxElapsedMs: 5_000 },
  });
  try {
    const campaign = await admin.createCampaign(
      CreateCampaignRequest.fromPartial({
        name: 'spring festival',
        totalCents: 10_000n,
        packetCount: 10,
        split: Split.RANDOM,
        batches: 1,
        expiresAt: new Date(Date.now() + 3_600_000),
        ownerId: 'owner-1',
      }),
    );
    // No request_id: the client makes one and sends it again on each retry of this grab.
    const first = await user.grab({ campaignId: campaign.campaignId });
    const second = await user.grab({ campaignId: campaign.campaignId });
    let error: RedPacketError | undefined;
    try {
      await user.getCampaign({ campaignId: 'no such id!' });
    } catch (err) {
      if (!(err instanceof RedPacketError)) throw err;
      error = err; // err.code, err.codeName ('INVALID_ARGUMENT'), err.details, err.requestId, err.method
    }
    return { campaign, first, second, error };
  } finally {
    admin.close();
    user.close();
  }
}

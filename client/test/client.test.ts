/**
 * @redpacket/client against a real grab-svc (in process, on 127.0.0.1, the real Redis): the README's
 * example as it is written, typed errors with the request id, the grab's retry with one request_id
 * through a server that comes up late, and the bounds of that retry; ImportUsers against a real
 * account-svc (MySQL).
 */
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { status } from '@grpc/grpc-js';
import { createRedPacketClient, RedPacketError, type RetryOptions } from '@redpacket/client';
import { createGrabServer } from '@redpacket/grab-svc/server';
import { registerScripts } from '@redpacket/grab-svc/scripts';
import { createLogger, createRedis, keys, startServer, type RunningServer } from '@redpacket/lib';
import { deleteKeys, pollUntil, testSigner, TEST_REDIS_URL } from '@redpacket/lib/testing';
import { CreateCampaignRequest, Outcome, type UserRecord } from '@redpacket/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startHarness as startAccounts,
  user as userRecord,
  type Harness as AccountsHarness,
} from '../../account-svc/test/harness.js';
import { campaignRequest, startHarness, type Harness } from '../../grab-svc/test/harness.js';
import { quickStart } from './readme-example.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

let h: Harness;
let address: string;
const campaigns: string[] = [];

beforeAll(async () => {
  h = await startHarness();
  address = `127.0.0.1:${h.server!.port}`;
});

afterAll(async () => {
  for (const id of campaigns) {
    await deleteKeys(h.redis, `rp:{${id}}:*`);
    await h.redis.zrem(keys.campaigns, id);
  }
  await h?.close();
});

/** A loopback port nothing listens on (it was free a moment ago). */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

async function rejection(p: Promise<unknown>): Promise<RedPacketError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RedPacketError);
  return err as RedPacketError;
}

async function newCampaign(): Promise<string> {
  const admin = createRedPacketClient({ address, token: h.adminToken });
  try {
    const c = await admin.createCampaign(campaignRequest());
    campaigns.push(c.campaignId);
    return c.campaignId;
  } finally {
    admin.close();
  }
}

describe('the README example', () => {
  it('is the code in test/readme-example.ts, verbatim', async () => {
    const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8');
    const example = await readFile(new URL('./readme-example.ts', import.meta.url), 'utf8');
    const block = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block).toBe(example);
  });

  it('creates a campaign with an admin token, wins, then gets ALREADY_GRABBED and a typed error', async () => {
    const user = `${h.run}-readme`;
    let asked = 0;
    const r = await quickStart(address, h.adminToken, () => (asked++, h.userToken(user)));
    campaigns.push(r.campaign.campaignId);
    expect(r.campaign.packetCount).toBe(10);
    expect(r.first.outcome).toBe(Outcome.WON);
    expect(r.first.packetId).not.toBe('');
    expect(r.first.amountCents).toBeGreaterThan(0n);
    // a new grab (a new request_id) of the same user: the same packet, never a second one
    expect(r.second).toMatchObject({
      outcome: Outcome.ALREADY_GRABBED,
      packetId: r.first.packetId,
      amountCents: r.first.amountCents,
    });
    expect(r.error).toMatchObject({
      code: status.INVALID_ARGUMENT,
      codeName: 'INVALID_ARGUMENT',
      method: '/redpacket.v1.GrabService/GetCampaign',
    });
    expect(r.error!.details).toContain('campaign_id');
    expect(r.error!.requestId).toMatch(UUID);
    // the provider was asked once per call: two grabs and the failed GetCampaign
    expect(asked).toBe(3);
    const ops = createRedPacketClient({ address, token: h.adminToken });
    const stats = await ops.getCampaignStats({ campaignId: r.campaign.campaignId });
    ops.close();
    expect(stats.packetsClaimed).toBe(1);
  });
});

describe('errors', () => {
  it('carry the request id the server answered with, or the one sent on the grab', async () => {
    const c = createRedPacketClient({ address, token: h.adminToken });
    try {
      // A bad CreateCampaign: the server echoes the id it was given in its trailers.
      const bad = CreateCampaignRequest.fromPartial({ ...campaignRequest(), packetCount: 0 });
      const given = await rejection(c.createCampaign(bad, { requestId: 'ops-req-1' }));
      expect(given).toMatchObject({ code: status.INVALID_ARGUMENT, requestId: 'ops-req-1' });
      expect(given.details).toContain('packet_count');
      // An unusable id is replaced by the server's own, and that one is what the error carries.
      const replaced = await rejection(c.createCampaign(bad, { requestId: 'has space' }));
      expect(replaced.requestId).toMatch(UUID);
      // The grab (a hot path) sends no id back: the error has the one the client sent, not retried.
      const retries: RedPacketError[] = [];
      const g = createRedPacketClient({
        address,
        tokenProvider: () => h.userToken(`${h.run}-bad`),
        retry: { onRetry: (e) => retries.push(e) },
      });
      const grab = await rejection(g.grab({ campaignId: 'bad id!', requestId: 'grab-req-1' }));
      g.close();
      expect(grab).toMatchObject({
        code: status.INVALID_ARGUMENT,
        requestId: 'grab-req-1',
        codeName: 'INVALID_ARGUMENT',
      });
      expect(retries).toHaveLength(0);
      // A user token on AdminService.
      const asUser = createRedPacketClient({ address, token: await h.userToken(`${h.run}-nobody`) });
      const denied = await rejection(asUser.listCampaigns({ pageSize: 10, pageToken: '' }));
      asUser.close();
      expect(denied.codeName).toBe('PERMISSION_DENIED');
    } finally {
      c.close();
    }
  });
});

describe('the grab retry', () => {
  it('keeps one request_id through UNAVAILABLE until a server comes up, and wins once', async () => {
    const campaignId = await newCampaign();
    const user = `${h.run}-late`;
    const port = await freePort();
    const failures: RedPacketError[] = [];
    const retry: RetryOptions = {
      attempts: 100,
      maxElapsedMs: 30_000,
      initialDelayMs: 20,
      maxDelayMs: 200,
      onRetry: (e) => failures.push(e),
    };
    const c = createRedPacketClient({ address: `127.0.0.1:${port}`, tokenProvider: () => h.userToken(user), retry });
    const redis = createRedis({ url: TEST_REDIS_URL });
    let late: RunningServer | undefined;
    try {
      const grabbing = c.grab({ campaignId });
      await pollUntil('two failed attempts', () => failures.length >= 2);
      // A second grab-svc replica on the same Redis, on the port the client is trying.
      registerScripts(redis);
      const log = createLogger('late-grab-svc', 'silent');
      const services = createGrabServer({
        redis,
        eligibility: h.eligibility,
        tokens: testSigner().verifier(),
        log,
      });
      late = await startServer({ services, host: '127.0.0.1', port, log });
      const won = await grabbing;
      expect(won.outcome).toBe(Outcome.WON);
      expect(failures.length).toBeGreaterThanOrEqual(2);
      for (const f of failures) expect(f.code).toBe(status.UNAVAILABLE);
      const ids = new Set(failures.map((f) => f.requestId));
      expect(ids.size).toBe(1);
      const [requestId] = [...ids];
      expect(requestId).toMatch(UUID);
      // A direct retry with that request_id is the same request: WON, the same packet. (A WON, not
      // ALREADY_GRABBED, only comes back for the request_id that won: so the winning attempt sent it.)
      const direct = await h.grabAs(campaignId, user, requestId);
      expect(direct).toMatchObject({ outcome: Outcome.WON, packetId: won.packetId, amountCents: won.amountCents });
      const other = await h.grabAs(campaignId, user);
      expect(other).toMatchObject({ outcome: Outcome.ALREADY_GRABBED, packetId: won.packetId });
    } finally {
      c.close();
      await late?.shutdown(2000);
      await redis.quit();
    }
  });

  it('gives up with UNAVAILABLE after the attempts or the total time', async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    const token = await h.userToken(`${h.run}-dead`);
    const next: number[] = [];
    const byCount = createRedPacketClient({
      address: dead,
      token,
      retry: { attempts: 3, initialDelayMs: 5, maxDelayMs: 20, onRetry: (_e, n) => next.push(n) },
    });
    const counted = await rejection(byCount.grab({ campaignId: 'c1' }));
    byCount.close();
    expect(counted.code).toBe(status.UNAVAILABLE);
    expect(next).toEqual([2, 3]);

    const byTime = createRedPacketClient({
      address: dead,
      token,
      retry: { attempts: 1_000_000, initialDelayMs: 5, maxDelayMs: 50, maxElapsedMs: 400 },
    });
    const started = Date.now();
    const timed = await rejection(byTime.grab({ campaignId: 'c1' }));
    const ms = Date.now() - started;
    byTime.close();
    expect(timed.codeName).toBe('UNAVAILABLE');
    expect(ms).toBeGreaterThanOrEqual(300);
    expect(ms).toBeLessThan(3000);
  });

  it('is the grab only: another method fails at the first UNAVAILABLE', async () => {
    let asked = 0;
    const retried: RedPacketError[] = [];
    const c = createRedPacketClient({
      address: `127.0.0.1:${await freePort()}`,
      tokenProvider: () => (asked++, h.adminToken),
      retry: { attempts: 10, initialDelayMs: 5, onRetry: (e) => retried.push(e) },
    });
    const err = await rejection(c.getCampaign({ campaignId: 'c1' }));
    c.close();
    expect(err.code).toBe(status.UNAVAILABLE);
    expect(asked).toBe(1);
    expect(retried).toHaveLength(0);
  });
});

describe('importUsers (a client stream) against a real account-svc', () => {
  let a: AccountsHarness;
  beforeAll(async () => {
    a = await startAccounts();
  });
  afterAll(async () => {
    await a?.close();
  });

  it('streams batches from an async source; a user token is refused with a typed error', async () => {
    const accounts = a.accounts.getChannel().getTarget().replace(/^dns:/, '');
    const adminToken = await testSigner().sign({ userId: `${a.prefix}admin`, role: 'admin' });
    // `address` is grab-svc; account-svc is apart, as in the mesh.
    const c = createRedPacketClient({ address, addresses: { account: accounts }, token: adminToken });
    try {
      async function* batches(): AsyncGenerator<UserRecord[]> {
        for (let b = 0; b < 3; b++) yield Array.from({ length: 50 }, (_, i) => userRecord(`${a.prefix}u${b}-${i}`));
        yield [userRecord(`${a.prefix}u0-0`), userRecord('bad id')];
      }
      const res = await c.importUsers(batches());
      expect(res).toMatchObject({ received: 152n, created: 150n, duplicates: 1n, rejected: 1n });
      const acct = await c.getAccount({ userId: `${a.prefix}u2-49` });
      expect(acct.userId).toBe(`${a.prefix}u2-49`);

      const asUser = createRedPacketClient({
        address: accounts,
        token: await testSigner().sign({ userId: `${a.prefix}u0-1` }),
      });
      const denied = await rejection(asUser.importUsers([[userRecord(`${a.prefix}x`)]], { requestId: 'import-1' }));
      asUser.close();
      expect(denied).toMatchObject({
        codeName: 'PERMISSION_DENIED',
        requestId: 'import-1',
        method: '/redpacket.v1.AccountService/ImportUsers',
      });
      await expect(c.getAccount({ userId: `${a.prefix}x` })).rejects.toMatchObject({ codeName: 'NOT_FOUND' });

      // A source that fails cancels the call and rejects with the source's own error.
      async function* failing(): AsyncGenerator<UserRecord[]> {
        yield [userRecord(`${a.prefix}y`)];
        throw new Error('the export file is truncated');
      }
      await expect(c.importUsers(failing())).rejects.toThrow('the export file is truncated');
    } finally {
      c.close();
    }
  });
});

/**
 * HTTP smoke test through Envoy, for a Docker host running docker-compose.yml (CI's edge
 * workflow runs it in a container on the mesh's network). Creates campaigns over gRPC as an admin,
 * then only speaks HTTP/JSON to Envoy: a grab wins, a spent campaign answers 429 SOLD_OUT, a user
 * pressing too often gets 429 RATE_LIMITED, a call without a token 401 (all in the JSON error
 * shape), plain HTTP a redirect to https.
 */
import { credentials, Metadata } from '@grpc/grpc-js';
import { parseEnv, readPrivateKeyFile, TokenSigner } from '@redpacket/lib';
import { AdminServiceClient, Split, type Campaign, type CreateCampaignRequest } from '@redpacket/proto';
import { z } from 'zod';

const env = parseEnv(
  'edge-smoke',
  z.object({
    ENVOY_URL: z.string().url().default('https://envoy:8443'),
    ENVOY_PLAIN_URL: z.string().url().default('http://envoy:8080'),
    GRAB_ADDR: z.string().default('grab-svc:50051'),
    /** The operator's signing key (the one account-svc has): the smoke test signs as an admin. */
    JWT_PRIVATE_KEY_FILE: z.string().min(1),
    SMOKE_TIMEOUT_MS: z.coerce.number().int().default(60_000),
  }),
  process.env,
);

const signer = new TokenSigner({ privateKeyPem: readPrivateKeyFile(env.JWT_PRIVATE_KEY_FILE) });
const run = Date.now().toString(36);
const admin = new AdminServiceClient(env.GRAB_ADDR, credentials.createInsecure());

async function createCampaign(name: string, packets: number): Promise<Campaign> {
  const md = new Metadata();
  md.set('authorization', `Bearer ${await signer.sign({ userId: 'smoke-admin', role: 'admin' })}`);
  const req: CreateCampaignRequest = {
    name,
    totalCents: BigInt(packets * 100),
    packetCount: packets,
    split: Split.EQUAL,
    batches: 1,
    batchIntervalMs: 0n,
    startsAt: undefined,
    expiresAt: new Date(Date.now() + 3_600_000),
    ownerId: 'smoke-owner',
    eligibility: undefined,
  };
  return new Promise((resolve, reject) => admin.createCampaign(req, md, (e, c) => (e ? reject(e) : resolve(c))));
}

interface Reply {
  status: number;
  reason: string | null;
  body: Record<string, unknown>;
}

async function grab(campaignId: string, userId: string | undefined): Promise<Reply> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (userId) headers['authorization'] = `Bearer ${await signer.sign({ userId })}`;
  const res = await fetch(`${env.ENVOY_URL}/v1/campaigns/${campaignId}/grab`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ request_id: `smoke-${run}-${userId ?? 'anon'}` }),
  });
  const text = await res.text();
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    body = { raw: text };
  }
  return { status: res.status, reason: res.headers.get('x-redpacket-reason'), body };
}

function check(ok: boolean, what: string, got: unknown): void {
  if (!ok) throw new Error(`smoke: ${what}; got ${JSON.stringify(got)}`);
  console.log(`ok   ${what}`);
}

async function until(what: string, f: () => Promise<Reply>, ok: (r: Reply) => boolean): Promise<Reply> {
  const deadline = Date.now() + env.SMOKE_TIMEOUT_MS;
  let last: Reply | string | undefined;
  while (Date.now() < deadline) {
    try {
      const reply = await f();
      if (ok(reply)) return reply;
      last = reply;
    } catch (err) {
      last = `error: ${(err as Error).message}`; // Envoy or an upstream still starting
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`smoke: timed out waiting for ${what}; last ${JSON.stringify(last)}`);
}

// The mesh may still be warming up: wait until Envoy answers a grab at all.
const small = await createCampaign(`smoke-${run}-small`, 2);
const first = await until(
  'a first grab through Envoy',
  () => grab(small.campaignId, `smoke-${run}-a`),
  (r) => r.status === 200,
);
check(first.body['outcome'] === 'WON', 'a grab through Envoy wins', first);
const second = await grab(small.campaignId, `smoke-${run}-b`);
check(second.status === 200 && second.body['outcome'] === 'WON', 'the second grab wins the last packet', second);
const soldOut = await until(
  'the sold-out answer at the edge',
  () => grab(small.campaignId, `smoke-${run}-c-${Math.random().toString(36).slice(2)}`),
  (r) => r.status === 429,
);
check(
  soldOut.reason === 'SOLD_OUT' && soldOut.body['reason'] === 'SOLD_OUT',
  'a spent campaign is 429 SOLD_OUT',
  soldOut,
);

const big = await createCampaign(`smoke-${run}-big`, 1000);
const presser = `smoke-${run}-presser`;
const limited = await until(
  'the per-user limit',
  () => grab(big.campaignId, presser),
  (r) => r.status === 429,
);
check(
  limited.reason === 'RATE_LIMITED' && limited.body['reason'] === 'RATE_LIMITED',
  'a user pressing on is 429 RATE_LIMITED',
  limited,
);

const anonymous = await grab(big.campaignId, undefined);
check(
  anonymous.status === 401 && anonymous.body['reason'] === 'UNAUTHENTICATED' && anonymous.body['code'] === 16,
  'a grab without a token is 401 in the JSON error shape',
  anonymous,
);

// Plain HTTP only redirects, keeping the method (308), to the TLS listener.
const plain = await fetch(`${env.ENVOY_PLAIN_URL}/v1/campaigns/${big.campaignId}/grab`, {
  method: 'POST',
  redirect: 'manual',
});
const location = plain.headers.get('location') ?? '';
check(
  plain.status === 308 && location.startsWith('https://') && location.endsWith(`/v1/campaigns/${big.campaignId}/grab`),
  'plain HTTP is a 308 to https',
  { status: plain.status, location },
);
admin.close();
console.log('smoke: all passed');

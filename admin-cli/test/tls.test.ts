/**
 * mTLS inside the mesh, for real: a PKI made here with openssl, the built grab-svc spawned with
 * GRPC_TLS_*, and every kind of client against it (plaintext, another CA's certificate, none, the
 * mesh's own), the real `redpacket` binary over TLS, and the refusals of a partial set.
 */
import { credentials, status, type ChannelCredentials } from '@grpc/grpc-js';
import { channelCredentials } from '@redpacket/lib';
import { bearer, call, grpcError, makeTestPki, refusal, testSigner, type TestPki } from '@redpacket/lib/testing';
import { spawnNode } from '@redpacket/loadgen';
import { GrabServiceClient, type Campaign } from '@redpacket/proto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, cliJson, startGrabSvc, type GrabServer } from './helpers.js';

const GRAB_MAIN = fileURLToPath(new URL('../../grab-svc/dist/main.js', import.meta.url));

let pki: TestPki;
let g: GrabServer;
let campaignId: string;

beforeAll(async () => {
  pki = makeTestPki();
  g = await startGrabSvc(pki.env);
  const created = await cliJson<{ campaignId: string }>(
    ['campaign', 'create', '--name', 'mtls', '--total', '10', '--packets', '10'],
    { ...g.env, ...pki.env },
  );
  campaignId = g.track(created.campaignId);
}, 60_000);

afterAll(async () => {
  await g?.stop();
  pki?.remove();
});

/** GetCampaign through the generated client over `creds`, with a user's token. */
async function getCampaign(creds: ChannelCredentials): Promise<Campaign> {
  const client = new GrabServiceClient(g.address, creds);
  try {
    const token = await testSigner().sign({ userId: 'mtls-user', ttlSeconds: 60 });
    return await call(client.getCampaign, client, { campaignId }, bearer(token));
  } finally {
    client.close();
  }
}

describe('a grab-svc started with GRPC_TLS_*', () => {
  it('answers a client with a certificate of the mesh CA', async () => {
    const campaign = await getCampaign(channelCredentials(pki.meshTls));
    expect(campaign).toMatchObject({ campaignId, name: 'mtls', totalCents: 1000n, packetCount: 10 });
  });

  it('refuses a plaintext client', async () => {
    const err = await grpcError(getCampaign(credentials.createInsecure()));
    expect(err.code).toBe(status.UNAVAILABLE);
  });

  it('refuses a client certificate signed by another CA', async () => {
    // the client trusts the mesh's CA (so the server is fine to it) but shows the rogue certificate
    const rogue = credentials.createSsl(pki.meshTls.ca, pki.rogueTls.key, pki.rogueTls.cert);
    const err = await grpcError(getCampaign(rogue));
    expect(err.code).toBe(status.UNAVAILABLE);
  });

  it('refuses a TLS client without a certificate', async () => {
    const err = await grpcError(getCampaign(credentials.createSsl(pki.meshTls.ca)));
    expect(err.code).toBe(status.UNAVAILABLE);
  });

  it('is not trusted by a client of another CA', async () => {
    const err = await grpcError(getCampaign(channelCredentials(pki.rogueTls)));
    expect(err.code).toBe(status.UNAVAILABLE);
  });
});

describe('redpacket over mTLS', () => {
  it('lists campaigns with GRPC_TLS_* set', async () => {
    const page = await cliJson<{ campaigns: { campaignId: string }[] }>(['campaign', 'list', '--page-size', '500'], {
      ...g.env,
      ...pki.env,
    });
    expect(page.campaigns.map((c) => c.campaignId)).toContain(campaignId);
  });

  it('lists campaigns with the --tls-* flags', async () => {
    const { certFile, keyFile, caFile } = pki.mesh;
    const r = await cli(
      ['campaign', 'list', '--tls-cert', certFile, '--tls-key', keyFile, '--tls-ca', caFile, '--page-size', '500'],
      g.env,
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(campaignId);
  });

  it('cannot reach it in plaintext (exit 3)', async () => {
    const r = await cli(['campaign', 'list', '--timeout', '3s'], g.env);
    expect(r.code).toBe(3);
  });

  it('refuses a partial set, naming what is missing (exit 2)', async () => {
    const r = await cli(['campaign', 'list'], { ...g.env, GRPC_TLS_CERT_FILE: pki.mesh.certFile });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('missing --tls-key (env GRPC_TLS_KEY_FILE), --tls-ca (env GRPC_TLS_CA_FILE)');
  });
});

describe('a service main with a partial GRPC_TLS_* set', () => {
  it('refuses to start, naming the missing variable', async () => {
    const child = spawnNode(GRAB_MAIN, [], {
      GRPC_PORT: '0',
      ...testSigner().env,
      GRPC_TLS_CERT_FILE: pki.mesh.certFile,
      GRPC_TLS_KEY_FILE: pki.mesh.keyFile,
    });
    const { line, exitCode } = await refusal(child);
    expect(line).toContain('grab-svc: bad environment variable GRPC_TLS_CA_FILE: required with GRPC_TLS_CERT_FILE');
    expect(exitCode).toBe(2);
  });
});

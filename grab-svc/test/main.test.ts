import { credentials, status } from '@grpc/grpc-js';
import { keys } from '@redpacket/lib';
import {
  bearer,
  call,
  deleteKeys,
  exitCodeOf,
  grpcError,
  refusal,
  requireRedis,
  testSigner,
} from '@redpacket/lib/testing';
import { freePort, spawnNode } from '@redpacket/loadgen';
import { AdminServiceClient, GrabServiceClient, Outcome, Split } from '@redpacket/proto';
import { expect, it } from 'vitest';

const mainScript = new URL('../dist/main.js', import.meta.url);

it('refuses to start with a bad environment variable, naming it', async () => {
  const { line, exitCode } = await refusal(spawnNode(mainScript, [], { GRPC_PORT: 'not-a-port', ...testSigner().env }));
  expect(line).toContain('GRPC_PORT');
  expect(exitCode).toBe(2);
});

it('refuses to start without its public keys unless REDPACKET_DEV=1, naming the variable', async () => {
  const { line, exitCode } = await refusal(spawnNode(mainScript, [], { GRPC_PORT: '0' }));
  expect(line).toMatch(/grab-svc: bad environment variable JWT_JWKS_FILE: required \(or JWT_JWKS_URL\)/);
  expect(exitCode).toBe(2);
});

it('SIGTERM: in-flight grabs finish, every WON is recorded, the process exits 0', async () => {
  const redis = await requireRedis();
  const port = await freePort();
  // no relay: this test counts the outbox, and a relay would also drain other tests' outboxes;
  // no settle timer: it would settle other tests' ended campaigns
  const child = spawnNode(mainScript, [], {
    GRPC_PORT: String(port),
    // The shared test Redis keeps nothing on disk: best effort, opted into explicitly.
    REDIS_DURABILITY: 'none',
    ...testSigner().env,
    LOG_LEVEL: 'info',
    RELAY_ENABLED: '0',
    SETTLE_EVERY_MS: '0',
  });
  let campaignId = '';
  try {
    await child.waitFor(/gRPC server listening/);
    const addr = `127.0.0.1:${port}`;
    const admin = new AdminServiceClient(addr, credentials.createInsecure());
    const grab = new GrabServiceClient(addr, credentials.createInsecure());
    const adminMd = bearer(await testSigner().sign({ userId: 'ops', role: 'admin' }));
    const c = await call(
      admin.createCampaign,
      admin,
      {
        name: 'sigterm',
        totalCents: 100_000n,
        packetCount: 1000,
        split: Split.RANDOM,
        batches: 1,
        batchIntervalMs: 0n,
        startsAt: undefined,
        expiresAt: new Date(Date.now() + 60_000),
        ownerId: 'ops',
        eligibility: undefined,
      },
      adminMd,
    );
    campaignId = c.campaignId;
    const tokens = await Promise.all(
      Array.from({ length: 600 }, (_, i) => testSigner().sign({ userId: `sig-${campaignId}-${i}` })),
    );
    const calls = tokens.map((t) =>
      call(grab.grab, grab, { campaignId, requestId: '' }, bearer(t)).then(
        (r) => ({ ok: true as const, r }),
        (e: { code: number }) => ({ ok: false as const, code: e.code }),
      ),
    );
    // let the first answers arrive, then ask the server to stop while the rest are in flight
    await Promise.race(calls);
    child.proc.kill('SIGTERM');
    const results = await Promise.all(calls);
    const exit = await exitCodeOf(child.proc);
    expect(exit).toBe(0);
    const won = results.filter((x) => x.ok && x.r.outcome === Outcome.WON);
    const failed = results.filter((x) => !x.ok);
    // calls the server refused while draining fail with UNAVAILABLE; none may half-happen
    for (const f of failed) expect([status.UNAVAILABLE, status.CANCELLED]).toContain(f.ok ? -1 : f.code);
    expect(won.length).toBeGreaterThan(0);
    expect(await redis.hlen(keys.claims(campaignId))).toBe(won.length);
    expect(await redis.xlen(keys.outbox(campaignId))).toBe(won.length);
    admin.close();
    grab.close();
    const fresh = new GrabServiceClient(addr, credentials.createInsecure());
    const after = await grpcError(call(fresh.grab, fresh, { campaignId, requestId: '' }, bearer(tokens[0]!)));
    expect(after.code).toBe(status.UNAVAILABLE);
    fresh.close();
  } finally {
    await child.stop();
    if (campaignId) {
      await deleteKeys(redis, `rp:{${campaignId}}:*`);
      await redis.zrem(keys.campaigns, campaignId);
    }
    await redis.quit();
  }
});

it('METRICS_PORT: the real process serves Prometheus metrics that count its calls', async () => {
  const [port, metricsPort] = [await freePort(), await freePort()];
  const child = spawnNode(mainScript, [], {
    GRPC_PORT: String(port),
    // The shared test Redis keeps nothing on disk: best effort, opted into explicitly.
    REDIS_DURABILITY: 'none',
    METRICS_PORT: String(metricsPort),
    ...testSigner().env,
    LOG_LEVEL: 'info',
    RELAY_ENABLED: '0',
    SETTLE_EVERY_MS: '0',
  });
  try {
    await child.waitFor(/gRPC server listening/);
    const grab = new GrabServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
    const token = await testSigner().sign({ userId: 'metrics-user' });
    for (let i = 0; i < 3; i++) {
      const err = await grpcError(
        call(grab.grab, grab, { campaignId: 'no-such-campaign', requestId: '' }, bearer(token)),
      );
      expect(err.code).toBe(status.NOT_FOUND);
    }
    grab.close();
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(text).toContain('redpacket_rpc_total{method="/redpacket.v1.GrabService/Grab",code="NOT_FOUND"} 3');
  } finally {
    await child.stop();
  }
});

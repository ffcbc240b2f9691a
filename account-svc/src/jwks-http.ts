/**
 * Serves the JWKS (public keys only) that verifiers fetch from JWT_JWKS_URL and Envoy's jwt_authn
 * from remote_jwks, over plain HTTP at /.well-known/jwks.json.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Jwks } from '@redpacket/lib';

export const JWKS_PATH = '/.well-known/jwks.json';

export interface JwksServer {
  server: Server;
  port: number;
  close(): Promise<void>;
}

/** Serves `jwks()` as it is at each request, so a key published by a reload is served at once. */
export async function startJwksServer(opts: { jwks: () => Jwks; host: string; port: number }): Promise<JwksServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' || path !== JWKS_PATH) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    res
      .writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=60' })
      .end(JSON.stringify(opts.jwks()));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

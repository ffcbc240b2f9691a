/**
 * Serves the JWKS that Envoy's jwt_authn fetches (remote_jwks) over plain HTTP. For HS256 the
 * document holds the signing secret itself, so this listener belongs on an internal address only,
 * never behind a public route.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { jwksFromSecret } from '@redpacket/lib';

export const JWKS_PATH = '/.well-known/jwks.json';

export interface JwksServer {
  server: Server;
  port: number;
  close(): Promise<void>;
}

export async function startJwksServer(opts: { secret: string; host: string; port: number }): Promise<JwksServer> {
  const body = JSON.stringify(jwksFromSecret(opts.secret));
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' || path !== JWKS_PATH) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(body);
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

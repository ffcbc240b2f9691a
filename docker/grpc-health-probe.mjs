// Container healthcheck: `node docker/grpc-health-probe.mjs PORT [SERVICE]` exits 0 when
// grpc.health.v1.Health/Check on 127.0.0.1:PORT answers SERVING, 1 otherwise (within 2 s).
// With the service's GRPC_TLS_* variables it calls over mTLS with the service's own certificate
// (whose names must then include 127.0.0.1: docs/identity.md).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { credentials, loadPackageDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

const require = createRequire(import.meta.url);
const protoDir = join(dirname(require.resolve('grpc-health-check/package.json')), 'proto');
const pkg = loadPackageDefinition(
  loadSync('health/v1/health.proto', { includeDirs: [protoDir], keepCase: true, enums: String }),
);
const port = process.argv[2] ?? process.env.GRPC_PORT;
const { GRPC_TLS_CERT_FILE: cert, GRPC_TLS_KEY_FILE: key, GRPC_TLS_CA_FILE: ca } = process.env;
const creds =
  cert && key && ca
    ? credentials.createSsl(readFileSync(ca), readFileSync(key), readFileSync(cert))
    : credentials.createInsecure();
const client = new pkg.grpc.health.v1.Health(`127.0.0.1:${port}`, creds);
client.Check({ service: process.argv[3] ?? '' }, { deadline: Date.now() + 2000 }, (err, res) => {
  client.close();
  if (err || res.status !== 'SERVING') {
    console.error(`unhealthy: ${err ? err.message : res.status}`);
    process.exit(1);
  }
  process.exit(0);
});

// Container healthcheck: `node docker/grpc-health-probe.mjs PORT [SERVICE]` exits 0 when
// grpc.health.v1.Health/Check on 127.0.0.1:PORT answers SERVING, 1 otherwise (within 2 s).
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
const client = new pkg.grpc.health.v1.Health(`127.0.0.1:${port}`, credentials.createInsecure());
client.Check({ service: process.argv[3] ?? '' }, { deadline: Date.now() + 2000 }, (err, res) => {
  client.close();
  if (err || res.status !== 'SERVING') {
    console.error(`unhealthy: ${err ? err.message : res.status}`);
    process.exit(1);
  }
  process.exit(0);
});

/**
 * Envoy's rate limit service definition, loaded at start-up from the API protos that ship in
 * @grpc/grpc-js-xds (deps/), never from copies.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { loadPackageDefinition, type GrpcObject, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

const require = createRequire(import.meta.url);

/** deps/ of @grpc/grpc-js-xds: envoy-api, xds, googleapis, protoc-gen-validate. */
export const xdsDepsDir = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');

export const xdsIncludeDirs = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(xdsDepsDir, d));

export const RLS_SERVICE = 'envoy.service.ratelimit.v3.RateLimitService';

/**
 * The RateLimitService client constructor; its `.service` is the server definition. The server
 * decodes without defaults (absent fields stay undefined: cheaper on the hot path); clients such
 * as tests may ask for defaults to read zero values as zeros.
 */
export function loadRateLimitService(opts: { defaults?: boolean } = {}): ServiceClientConstructor {
  const def = loadSync('envoy/service/ratelimit/v3/rls.proto', {
    includeDirs: xdsIncludeDirs,
    keepCase: true,
    longs: String,
    enums: String,
    defaults: opts.defaults ?? false,
    oneofs: true,
  });
  const pkg = loadPackageDefinition(def);
  const ns = ['envoy', 'service', 'ratelimit', 'v3'].reduce<GrpcObject>((o, k) => o[k] as GrpcObject, pkg);
  return ns['RateLimitService'] as ServiceClientConstructor;
}

/**
 * The baseline: a bare grpc-js unary server that returns the request bytes unchanged at
 * /bench.Echo/Echo. Run as its own process: `node echo-server.js [port]`; prints the port.
 */
import { Server, ServerCredentials, type ServiceDefinition } from '@grpc/grpc-js';

import { ECHO_PATH } from './echo-path.js';

const identity = (b: Buffer): Buffer => b;
const definition: ServiceDefinition = {
  Echo: {
    path: ECHO_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};

// the same server options as the services (channelz off), so the ratio measures handler work
const server = new Server({ 'grpc.enable_channelz': 0 });
server.addService(definition, {
  Echo: (call: { request: Buffer }, cb: (e: null, r: Buffer) => void) => cb(null, call.request),
});
server.bindAsync(`127.0.0.1:${Number(process.argv[2] ?? 0)}`, ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  process.stdout.write(`listening ${port}\n`);
});
process.on('SIGTERM', () => server.forceShutdown());

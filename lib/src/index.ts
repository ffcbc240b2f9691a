export * from './auth.js';
export * from './config.js';
export * from './errors.js';
export * from './grpc-server.js';
export * from './keys.js';
export * from './logger.js';
export * from './redis.js';

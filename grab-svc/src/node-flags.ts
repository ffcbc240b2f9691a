/**
 * V8 flags grab-svc runs with: `npm start -w grab-svc` (package.json, also the Docker image's
 * command) and the benchmarks pass these, and WORKERS' forks inherit them.
 *
 * A grab allocates a few KB of short-lived objects (HTTP/2 headers, metadata, the Redis command
 * and reply, promises); with V8's default 16 MB young generation, scavenges were the top item of
 * the grab profile (~18% of CPU). 32 MB semi-spaces cut the server's CPU per grab by ~10-35% in
 * the same session (docs/performance.md); 64 MB measured no better.
 */
export const GRAB_NODE_FLAGS = ['--max-semi-space-size=32'];

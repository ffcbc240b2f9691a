/**
 * A redis-server process of our own on a local port (the fault tests' Redis, the demo's durable
 * Redis): optionally with an AOF in a directory, so that a restart with the same directory loads
 * it. Stopped by its pid, never by name.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { pollUntil } from './poll.js';

/** A redis-server of our own; `stop()` ends it by its pid (SIGKILL: a crash, as a fault test wants). */
export interface LocalRedisServer {
  port: number;
  url: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

export interface LocalRedisOptions {
  /** AOF with this fsync policy, kept in `dir` (a restart with the same dir loads it); default off. */
  appendfsync?: 'always' | 'everysec';
  /** The server's working directory (AOF files); required with appendfsync. */
  dir?: string;
}

/** Starts a redis-server on 127.0.0.1:`port` (nothing on disk unless AOF is asked for) and waits until it answers PING. */
export async function startRedisServer(port: number, opts: LocalRedisOptions = {}): Promise<LocalRedisServer> {
  if (opts.appendfsync && !opts.dir) throw new Error('startRedisServer: an AOF needs a dir');
  const aof = opts.appendfsync
    ? ['--appendonly', 'yes', '--appendfsync', opts.appendfsync, '--dir', opts.dir as string]
    : ['--appendonly', 'no'];
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', ...aof], {
    stdio: 'ignore',
  });
  await new Promise<void>((resolve, reject) => {
    proc.once('error', (e) =>
      reject(new Error(`redis-server not runnable (apt-get install redis-server): ${e.message}`)),
    );
    proc.once('spawn', () => resolve());
  });
  const url = `redis://127.0.0.1:${port}`;
  const stop = (): Promise<void> =>
    new Promise((r) =>
      proc.exitCode !== null || proc.signalCode !== null ? r() : (proc.once('exit', () => r()), proc.kill('SIGKILL')),
    );
  try {
    await pollUntil(`redis-server on port ${port} answers`, async () => {
      const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      probe.on('error', () => undefined);
      try {
        await probe.connect();
        // A server loading its AOF answers LOADING until it has it all.
        return (await probe.ping()) === 'PONG';
      } catch {
        return false;
      } finally {
        probe.disconnect();
      }
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return { port, url, process: proc, stop };
}

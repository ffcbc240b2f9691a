/** `redpacket console`: the operator's web console (console/server.ts), served until Ctrl-C. */
import { Command } from 'commander';
import { startConsole } from '../console/server.js';
import { action, examples } from '../action.js';
import type { CliContext, CliEnv } from '../context.js';
import { usageError } from '../errors.js';
import { withRedis } from './switch.js';

/** "host:port" (an IPv6 host in brackets) as its parts. */
export function listenAddress(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text.trim());
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw usageError(`--listen: "${text}" is not host:port (e.g. 127.0.0.1:8090)`);
  return { host: m[1] ?? m[2]!, port };
}

async function serve(ctx: CliContext, redisUrl: string, o: { listen: string; grabMetrics?: string }): Promise<void> {
  const { host, port } = listenAddress(o.listen);
  await withRedis(ctx, redisUrl, async (redis) => {
    const running = await startConsole({ ctx, redis, host, port, grabMetricsUrl: o.grabMetrics });
    // the login link opens a session; the token itself never leaves this process
    ctx.print(
      { url: running.url, loginUrl: running.loginUrl },
      () => `console at ${running.url}\nopen ${running.loginUrl}`,
    );
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await running.close();
  });
}

export function consoleCommand(env: CliEnv): Command {
  const redisUrl = env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  return examples(
    new Command('console')
      .description(
        "the operator's web console: campaigns live, delivery, the money check, actions and switches (REDIS_URL for switches)",
      )
      .option('--listen <host:port>', 'address to serve on', '127.0.0.1:8090')
      .option(
        '--grab-metrics <url>',
        "grab-svc's Prometheus endpoint, for verification errors (e.g. http://127.0.0.1:9464/metrics)",
      )
      .action(action((ctx, o: { listen: string; grabMetrics?: string }) => serve(ctx, redisUrl, o))),
    ['redpacket console', 'REDPACKET_TOKEN=<admin jwt> redpacket console --listen 127.0.0.1:8090'],
  );
}

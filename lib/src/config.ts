/** Environment parsing for the services' main.ts: a zod schema in, typed values out, or exit 2. */
import type { z } from 'zod';

/** Parses `env` with `schema`; on a bad value prints every problem and exits with status 2. */
export function parseEnv<S extends z.ZodType>(service: string, schema: S, env: NodeJS.ProcessEnv): z.infer<S> {
  const parsed = schema.safeParse(env);
  if (parsed.success) return parsed.data;
  for (const issue of parsed.error.issues) {
    console.error(`${service}: bad environment variable ${issue.path.join('.')}: ${issue.message}`);
  }
  process.exit(2);
}

/**
 * ghz's call-data templates, rendered once per request before the load starts: variables
 * {{.RequestNumber}}, {{.FullyQualifiedName}}, {{.MethodName}}, {{.ServiceName}}, {{.InputName}},
 * {{.OutputName}}, {{.IsClientStreaming}}, {{.IsServerStreaming}}, {{.Timestamp}},
 * {{.TimestampUnix}}, {{.TimestampUnixMilli}}, {{.TimestampUnixNano}}, {{.UUID}}, functions
 * {{newUUID}}, {{randomString N}}, {{randomInt MIN MAX}}; plus {{.UserId}}, {{.UserNumber}} and
 * {{.Token}} for per-user tokens (--token-per-user).
 */
import { randomInt, randomUUID } from 'node:crypto';
import { usageError } from '../errors.js';

export type TemplateVars = Record<string, string | number | boolean>;
export type Render = (vars: TemplateVars) => string;

const ALPHANUM = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

function randomString(n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += ALPHANUM[randomInt(ALPHANUM.length)];
  return s;
}

function action(expr: string, known: Set<string>): (vars: TemplateVars) => string {
  const v = /^\.([A-Za-z]+)$/.exec(expr);
  if (v) {
    const name = v[1]!;
    if (!known.has(name)) throw usageError(`template: unknown variable {{.${name}}} (known: ${[...known].join(', ')})`);
    return (vars) => String(vars[name] ?? '');
  }
  const [fn = '', ...args] = expr.split(/\s+/);
  if (!['newUUID', 'randomString', 'randomInt'].includes(fn)) throw usageError(`template: unknown action {{${expr}}}`);
  const ints = args.map((a) => {
    if (!/^-?\d+$/.test(a)) throw usageError(`template: {{${expr}}}: "${a}" is not an integer`);
    return Number(a);
  });
  switch (fn) {
    case 'newUUID':
      return () => randomUUID();
    case 'randomString': {
      const n = ints[0] ?? 0;
      // ghz: a length of 0 or less means a random length up to 16
      return () => randomString(n > 0 ? n : 1 + randomInt(16));
    }
    case 'randomInt': {
      const [min = 0, max = 1 << 30] = ints;
      if (max <= min) throw usageError(`template: {{${expr}}}: MAX must exceed MIN`);
      return () => String(randomInt(min, max));
    }
    default:
      throw usageError(`template: unknown action {{${expr}}}`);
  }
}

/** Compiles a template once; `isStatic` says no action appears (render once, reuse). */
export function compile(text: string, variables: Iterable<string>): { render: Render; isStatic: boolean } {
  const known = new Set(variables);
  const parts: ((vars: TemplateVars) => string)[] = [];
  let last = 0;
  for (const m of text.matchAll(/\{\{-?\s*(.*?)\s*-?\}\}/g)) {
    const lit = text.slice(last, m.index);
    parts.push(() => lit);
    parts.push(action(m[1]!, known));
    last = m.index + m[0].length;
  }
  const tail = text.slice(last);
  parts.push(() => tail);
  return {
    render: (vars) => parts.map((p) => p(vars)).join(''),
    isStatic: parts.length === 1,
  };
}

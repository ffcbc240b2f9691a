/**
 * The protoc-gen-validate rules Envoy applies when it loads a config (`(validate.rules)` on
 * fields, `(validate.required)` on oneofs), evaluated over a parsed message, including the
 * messages inside every Any. It covers the rule kinds Envoy's API uses for scalars, strings,
 * enums, repeated fields, maps, messages, Any and Duration; string formats other than the HTTP
 * header regexes (email, hostname, ...) are not evaluated.
 */
import {
  getOption,
  type DescField,
  type DescMessage,
  type DescOneof,
  type Message,
  type Registry,
} from '@bufbuild/protobuf';
import {
  isReflectList,
  isReflectMap,
  isReflectMessage,
  reflect,
  type ReflectMessage,
} from '@bufbuild/protobuf/reflect';
import { anyUnpack, type Any } from '@bufbuild/protobuf/wkt';

type Rules = Record<string, unknown>;

export interface PgvContext {
  registry: Registry;
  violations: string[];
}

/** The fields of a rules message that are set, by proto name (unset proto2 fields are absent). */
function setFields(r: ReflectMessage): Rules {
  const out: Rules = {};
  for (const f of r.fields) if (r.isSet(f)) out[f.name] = r.get(f);
  return out;
}

function fieldRules(ctx: PgvContext, field: DescField): ReflectMessage | undefined {
  const ext = ctx.registry.getExtension('validate.rules');
  if (!ext || !field.proto.options) return undefined;
  const value = getOption(field as never, ext as never) as Message | undefined;
  const desc = ctx.registry.getMessage('validate.FieldRules');
  if (!value || !desc) return undefined;
  const r = reflect(desc, value as never);
  return r.fields.some((f) => r.isSet(f)) ? r : undefined;
}

function oneofRequired(ctx: PgvContext, oneof: DescOneof): boolean {
  const ext = ctx.registry.getExtension('validate.required');
  if (!ext || !oneof.proto.options) return false;
  return getOption(oneof as never, ext as never) === true;
}

const num = (v: unknown): number => (typeof v === 'bigint' ? Number(v) : Number(v));
const durationNs = (m: ReflectMessage | Rules): number => {
  const o = isReflectMessage(m) ? setFields(m) : m;
  return num(o['seconds'] ?? 0) * 1e9 + num(o['nanos'] ?? 0);
};

const HEADER_NAME = /^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$/;
/** PGV's header value rule, and its non-strict rule for names and values: no NUL, CR or LF. */
const noNulCrLf = (v: string): boolean => !/[\0\n\r]/u.test(v);

function checkNumber(v: number, r: Rules, path: string, out: string[]): void {
  if (r['ignore_empty'] === true && v === 0) return;
  const n = (k: string): number | undefined => (r[k] === undefined ? undefined : num(r[k]));
  const [c, lt, lte, gt, gte] = [n('const'), n('lt'), n('lte'), n('gt'), n('gte')];
  if (c !== undefined && v !== c) out.push(`${path}: must be ${c}`);
  if (lt !== undefined && !(v < lt)) out.push(`${path}: must be < ${lt}`);
  if (lte !== undefined && !(v <= lte)) out.push(`${path}: must be <= ${lte}`);
  if (gt !== undefined && !(v > gt)) out.push(`${path}: must be > ${gt}`);
  if (gte !== undefined && !(v >= gte)) out.push(`${path}: must be >= ${gte}`);
  const list = (k: string): number[] => (isReflectList(r[k]) ? [...(r[k] as Iterable<unknown>)].map(num) : []);
  if (list('in').length && !list('in').includes(v)) out.push(`${path}: not in the allowed values`);
  if (list('not_in').includes(v)) out.push(`${path}: a forbidden value`);
}

function checkString(v: string, r: Rules, path: string, out: string[]): void {
  if (r['ignore_empty'] === true && v === '') return;
  const chars = [...v].length;
  const bytes = Buffer.byteLength(v);
  const n = (k: string): number | undefined => (r[k] === undefined ? undefined : num(r[k]));
  if (n('min_len') !== undefined && chars < (n('min_len') as number)) out.push(`${path}: shorter than ${n('min_len')}`);
  if (n('max_len') !== undefined && chars > (n('max_len') as number)) out.push(`${path}: longer than ${n('max_len')}`);
  if (n('len') !== undefined && chars !== n('len')) out.push(`${path}: length must be ${n('len')}`);
  if (n('min_bytes') !== undefined && bytes < (n('min_bytes') as number))
    out.push(`${path}: under ${n('min_bytes')} bytes`);
  if (n('max_bytes') !== undefined && bytes > (n('max_bytes') as number))
    out.push(`${path}: over ${n('max_bytes')} bytes`);
  if (typeof r['const'] === 'string' && v !== r['const']) out.push(`${path}: must be ${String(r['const'])}`);
  if (typeof r['prefix'] === 'string' && !v.startsWith(r['prefix']))
    out.push(`${path}: must start with ${r['prefix']}`);
  if (typeof r['suffix'] === 'string' && !v.endsWith(r['suffix'])) out.push(`${path}: must end with ${r['suffix']}`);
  if (typeof r['contains'] === 'string' && !v.includes(r['contains']))
    out.push(`${path}: must contain ${r['contains']}`);
  const list = (k: string): string[] => (isReflectList(r[k]) ? [...(r[k] as Iterable<string>)] : []);
  if (list('in').length && !list('in').includes(v)) out.push(`${path}: not in the allowed values`);
  if (list('not_in').includes(v)) out.push(`${path}: a forbidden value`);
  if (typeof r['pattern'] === 'string') {
    let re: RegExp | undefined;
    try {
      re = new RegExp(r['pattern'], 'u');
    } catch {
      re = undefined; // an RE2-only construct: not evaluated here
    }
    if (re && !re.test(v)) out.push(`${path}: must match ${r['pattern']}`);
  }
  const wkr = r['well_known_regex'];
  if (wkr !== undefined) {
    const strict = r['strict'] !== false;
    // validate.KnownRegex: 1 HTTP_HEADER_NAME, 2 HTTP_HEADER_VALUE.
    const ok = strict && wkr === 1 ? HEADER_NAME.test(v) : wkr === 1 || wkr === 2 ? noNulCrLf(v) : true;
    if (!ok) out.push(`${path}: not a valid HTTP header ${wkr === 1 ? 'name' : 'value'}`);
  }
}

const NUMERIC = new Set(['float', 'double', 'int32', 'int64', 'uint32', 'uint64', 'sint32', 'sint64']);
['fixed32', 'fixed64', 'sfixed32', 'sfixed64'].forEach((t) => NUMERIC.add(t));

/** Applies one field's FieldRules to its value (a scalar, a ReflectMessage, list or map). */
function applyRules(
  ctx: PgvContext,
  field: DescField,
  rules: ReflectMessage,
  value: unknown,
  isSet: boolean,
  path: string,
): boolean {
  const out = ctx.violations;
  const all = setFields(rules);
  const msgRules = isReflectMessage(all['message']) ? setFields(all['message']) : {};
  if (msgRules['required'] === true && !isSet) out.push(`${path}: required`);
  const typeField = rules.oneofCase(rules.desc.oneofs[0] as DescOneof);
  if (!typeField) return msgRules['skip'] !== true;
  const kind = typeField.name;
  const r = isReflectMessage(all[kind]) ? setFields(all[kind]) : {};
  if (NUMERIC.has(kind)) {
    // On a wrapper message (UInt32Value, ...) the rules apply to its value when it is set.
    if (isReflectMessage(value)) {
      if (isSet) checkNumber(num(setFields(value)['value'] ?? 0), r, path, out);
    } else checkNumber(num(value), r, path, out);
  } else if (kind === 'string') {
    if (isReflectMessage(value)) {
      if (isSet) checkString(String(setFields(value)['value'] ?? ''), r, path, out);
    } else checkString(String(value), r, path, out);
  } else if (kind === 'bytes') {
    const len = value instanceof Uint8Array ? value.length : 0;
    if (r['min_len'] !== undefined && len < num(r['min_len'])) out.push(`${path}: under ${num(r['min_len'])} bytes`);
  } else if (kind === 'enum') {
    const e = field.enum;
    if (r['defined_only'] === true && e && !e.values.some((x) => x.number === value))
      out.push(`${path}: undefined enum value ${String(value)}`);
    checkNumber(num(value), { const: r['const'], in: r['in'], not_in: r['not_in'] }, path, out);
  } else if (kind === 'repeated' && isReflectList(value)) {
    if (r['ignore_empty'] === true && value.size === 0) return true;
    if (r['min_items'] !== undefined && value.size < num(r['min_items']))
      out.push(`${path}: fewer than ${num(r['min_items'])} items`);
    if (r['max_items'] !== undefined && value.size > num(r['max_items']))
      out.push(`${path}: more than ${num(r['max_items'])} items`);
    if (isReflectMessage(r['items'])) {
      let i = 0;
      for (const item of value) applyRules(ctx, field, r['items'], item, true, `${path}[${i++}]`);
    }
  } else if (kind === 'map' && isReflectMap(value)) {
    if (r['min_pairs'] !== undefined && value.size < num(r['min_pairs']))
      out.push(`${path}: fewer than ${num(r['min_pairs'])} pairs`);
  } else if (kind === 'any') {
    if (r['required'] === true && !isSet) out.push(`${path}: required`);
  } else if (kind === 'duration') {
    if (r['required'] === true && !isSet) out.push(`${path}: required`);
    if (isSet && isReflectMessage(value)) {
      const v = durationNs(value);
      for (const [k, ok] of [
        ['gt', (b: number) => v > b],
        ['gte', (b: number) => v >= b],
        ['lt', (b: number) => v < b],
        ['lte', (b: number) => v <= b],
      ] as const) {
        if (isReflectMessage(r[k]) && !ok(durationNs(r[k])))
          out.push(`${path}: duration must be ${k} ${durationNs(r[k]) / 1e9}s`);
      }
    }
  }
  return msgRules['skip'] !== true;
}

/** Checks a message and everything below it; violations are collected in ctx.violations. */
export function checkPgv(ctx: PgvContext, msg: ReflectMessage, path: string): void {
  if (msg.desc.typeName === 'google.protobuf.Any') {
    const inner = anyUnpack(msg.message as Any, ctx.registry);
    const typeName = String(setFields(msg)['type_url'] ?? '').replace(/^.*\//, '');
    const desc = ctx.registry.getMessage(typeName);
    if (inner && desc) checkPgv(ctx, reflect(desc, inner as never), `${path}<${desc.name}>`);
    return;
  }
  for (const oneof of msg.desc.oneofs) {
    if (oneofRequired(ctx, oneof) && !msg.oneofCase(oneof))
      ctx.violations.push(`${path}: one of ${oneof.name} is required`);
  }
  for (const field of msg.fields) {
    const isSet = msg.isSet(field);
    const value = msg.get(field);
    const rules = fieldRules(ctx, field);
    const p = `${path}.${field.name}`;
    if (rules && !(field.oneof && !isSet)) {
      if (!applyRules(ctx, field, rules, value, isSet, p)) continue;
    }
    if (!isSet) continue;
    if (isReflectMessage(value)) checkPgv(ctx, value, p);
    else if (isReflectList(value)) {
      let i = 0;
      for (const item of value) {
        if (isReflectMessage(item)) checkPgv(ctx, item, `${p}[${i}]`);
        i++;
      }
    } else if (isReflectMap(value)) {
      for (const [k, v] of value) if (isReflectMessage(v)) checkPgv(ctx, v, `${p}[${String(k)}]`);
    }
  }
}

/** All violations of a message of `desc`. */
export function pgvViolations(registry: Registry, desc: DescMessage, message: Message): string[] {
  const ctx: PgvContext = { registry, violations: [] };
  checkPgv(ctx, reflect(desc, message as never), desc.name);
  return ctx.violations;
}

/**
 * Rate limit rules in envoyproxy/ratelimit's YAML format (domain, nested descriptors, unit,
 * requests_per_unit, unlimited, shadow_mode), plus this gateway's `campaign` section, and the
 * matching of a request descriptor against them.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { z } from 'zod';

export const UNITS = ['second', 'minute', 'hour', 'day', 'month', 'year'] as const;
export type Unit = (typeof UNITS)[number];

/** Length of one unit in ms: a bucket refills requests_per_unit tokens over this period. */
export const UNIT_MS: Record<Unit, number> = {
  second: 1000,
  minute: 60_000,
  hour: 3_600_000,
  day: 86_400_000,
  month: 30 * 86_400_000,
  year: 365 * 86_400_000,
};

const RateLimitYaml = z.strictObject({
  name: z.string().optional(),
  unit: z
    .string()
    .transform((u) => u.toLowerCase())
    .pipe(z.enum(UNITS)),
  requests_per_unit: z.number().int().min(0),
  unlimited: z.boolean().optional(),
});

interface DescriptorYaml {
  key: string;
  value?: string | undefined;
  rate_limit?: z.infer<typeof RateLimitYaml> | undefined;
  shadow_mode?: boolean | undefined;
  detailed_metric?: boolean | undefined;
  descriptors?: DescriptorYaml[] | undefined;
}

const DescriptorYaml: z.ZodType<DescriptorYaml> = z.lazy(() =>
  z.strictObject({
    key: z.string().min(1),
    value: z.string().min(1).optional(),
    rate_limit: RateLimitYaml.optional(),
    shadow_mode: z.boolean().optional(),
    detailed_metric: z.boolean().optional(),
    descriptors: z.array(DescriptorYaml).optional(),
  }),
);

const ConfigYaml = z.strictObject({
  domain: z.string().min(1),
  campaign: z
    .strictObject({
      key: z.string().min(1),
      pattern: z.string().min(1),
    })
    .optional(),
  descriptors: z.array(DescriptorYaml),
});

/** A limit that applies to one descriptor. */
export interface Rule {
  /** Stable id of the rule, e.g. "route_grab.user" (used in metrics and bucket keys). */
  id: string;
  requestsPerUnit: number;
  unit: Unit;
  unlimited: boolean;
  shadow: boolean;
}

interface Node {
  rule: Rule | undefined;
  /** Children by exact "key=value", then by key alone (any value: one bucket per value). */
  exact: Map<string, Node>;
  anyValue: Map<string, Node>;
  /** Children whose value ends in "*": a prefix match. */
  prefixes: { key: string; prefix: string; node: Node }[];
}

export interface CampaignSection {
  /** Descriptor entry key whose value holds the campaign (the request path). */
  key: string;
  pattern: RegExp;
}

export interface RateLimitConfig {
  domain: string;
  campaign: CampaignSection | undefined;
  root: Node;
}

const emptyNode = (): Node => ({ rule: undefined, exact: new Map(), anyValue: new Map(), prefixes: [] });

function build(list: DescriptorYaml[], parentId: string, into: Node): void {
  for (const d of list) {
    const id = `${parentId}${parentId ? '.' : ''}${d.key}${d.value ? `_${d.value}` : ''}`;
    const node = emptyNode();
    if (d.rate_limit) {
      node.rule = {
        id,
        requestsPerUnit: d.rate_limit.requests_per_unit,
        unit: d.rate_limit.unit,
        unlimited: d.rate_limit.unlimited ?? false,
        shadow: d.shadow_mode ?? false,
      };
    }
    if (d.descriptors) build(d.descriptors, id, node);
    if (d.value === undefined) {
      if (into.anyValue.has(d.key)) throw new Error(`duplicate descriptor "${id}"`);
      into.anyValue.set(d.key, node);
    } else if (d.value.endsWith('*')) {
      into.prefixes.push({ key: d.key, prefix: d.value.slice(0, -1), node });
    } else {
      const k = `${d.key}=${d.value}`;
      if (into.exact.has(k)) throw new Error(`duplicate descriptor "${id}"`);
      into.exact.set(k, node);
    }
  }
}

/** Parses and checks a config; throws saying what is wrong. */
export function parseConfig(text: string): RateLimitConfig {
  const raw = ConfigYaml.parse(parse(text));
  const root = emptyNode();
  build(raw.descriptors, '', root);
  const campaign = raw.campaign && { key: raw.campaign.key, pattern: new RegExp(raw.campaign.pattern) };
  return { domain: raw.domain, campaign, root };
}

export function loadConfig(path: string): RateLimitConfig {
  return parseConfig(readFileSync(path, 'utf8'));
}

export interface Entry {
  key: string;
  value: string;
}

/**
 * Finds the rule for a descriptor, as envoyproxy/ratelimit does: each entry in turn selects a
 * child by exact key and value, else by a value prefix, else by key alone; the rule is the one
 * on the node reached by the last entry. Undefined when the descriptor has no rule.
 */
export function matchRule(config: RateLimitConfig, entries: readonly Entry[]): Rule | undefined {
  let node: Node | undefined = config.root;
  for (const e of entries) {
    const next: Node | undefined =
      node.exact.get(`${e.key}=${e.value}`) ??
      node.prefixes.find((p) => p.key === e.key && e.value.startsWith(p.prefix))?.node ??
      node.anyValue.get(e.key);
    if (!next) return undefined;
    node = next;
  }
  return node.rule;
}

/** The campaign a descriptor entry names, or undefined when it names none. */
export function campaignOf(config: RateLimitConfig, entry: Entry): string | undefined {
  if (!config.campaign || entry.key !== config.campaign.key) return undefined;
  return config.campaign.pattern.exec(entry.value)?.[1];
}

/** Every rule of a config with its limit as the file says ("10/minute" or "unlimited"), by id. */
export function listRules(config: RateLimitConfig): { id: string; limit: string }[] {
  const out: { id: string; limit: string }[] = [];
  const walk = (node: Node): void => {
    if (node.rule) {
      const r = node.rule;
      out.push({ id: r.id, limit: r.unlimited ? 'unlimited' : `${r.requestsPerUnit}/${r.unit}` });
    }
    for (const child of node.exact.values()) walk(child);
    for (const p of node.prefixes) walk(p.node);
    for (const child of node.anyValue.values()) walk(child);
  };
  walk(config.root);
  return out.sort((a, b) => a.id.localeCompare(b.id));
}

/**
 * The descriptors Envoy sends for a request, derived from envoy/envoy.yaml's route rate_limits
 * (never retyped), following Envoy's documented action semantics for the actions it uses.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

type Json = Record<string, unknown>;

export interface EnvoyRequest {
  /** Request headers after jwt_authn, including ":path" and ":method". */
  headers: Record<string, string>;
  remoteAddress?: string;
}

export interface WireDescriptor {
  entries: { key: string; value: string }[];
}

const envoyYaml = parse(readFileSync(new URL('../../envoy/envoy.yaml', import.meta.url), 'utf8')) as Json;

/** The RLS domain envoy.yaml's ratelimit filter sends. */
export function envoyDomain(): string {
  return String(rlsFilter()['domain']);
}

/** The TLS listener's HTTP connection manager: the one that routes (the plain listener only redirects). */
function hcm(): Json {
  const listeners = (envoyYaml['static_resources'] as Json)['listeners'] as Json[];
  const listener = listeners.find((l) => l['name'] === 'https');
  if (!listener) throw new Error('envoy.yaml has no listener named https');
  const chain = (listener['filter_chains'] as Json[])[0] as Json;
  return (chain['filters'] as Json[])[0]?.['typed_config'] as Json;
}

function httpFilters(): Json[] {
  return hcm()['http_filters'] as Json[];
}

function rlsFilter(): Json {
  return httpFilters().find((f) => f['name'] === 'envoy.filters.http.ratelimit')?.['typed_config'] as Json;
}

function route(name: string): Json {
  const vh = ((hcm()['route_config'] as Json)['virtual_hosts'] as Json[])[0] as Json;
  const r = (vh['routes'] as Json[]).find((x) => x['name'] === name);
  if (!r) throw new Error(`envoy.yaml has no route named ${name}`);
  return r['route'] as Json;
}

/**
 * One descriptor per rate_limits entry of the route (stage 0, the filter's stage), built from the
 * actions in order. As in Envoy, a request_headers action whose header is absent drops the whole
 * descriptor (unless skip_if_absent, which drops just that entry).
 */
export function descriptorsFor(routeName: string, req: EnvoyRequest): WireDescriptor[] {
  const stage = Number(rlsFilter()['stage'] ?? 0);
  const out: WireDescriptor[] = [];
  for (const limit of (route(routeName)['rate_limits'] as Json[] | undefined) ?? []) {
    if (Number(limit['stage'] ?? 0) !== stage) continue;
    const entries: { key: string; value: string }[] = [];
    let dropped = false;
    for (const action of limit['actions'] as Json[]) {
      const [kind, cfg] = Object.entries(action)[0] as [string, Json];
      if (kind === 'generic_key') {
        entries.push({ key: String(cfg['descriptor_key'] ?? 'generic_key'), value: String(cfg['descriptor_value']) });
      } else if (kind === 'request_headers') {
        const value = req.headers[String(cfg['header_name']).toLowerCase()];
        if (value === undefined) {
          if (cfg['skip_if_absent'] === true) continue;
          dropped = true;
          break;
        }
        entries.push({ key: String(cfg['descriptor_key']), value });
      } else if (kind === 'remote_address') {
        if (!req.remoteAddress) {
          dropped = true;
          break;
        }
        entries.push({ key: 'remote_address', value: req.remoteAddress });
      } else {
        throw new Error(`rate limit action ${kind} is not modelled by this test helper`);
      }
    }
    if (!dropped && entries.length > 0) out.push({ entries });
  }
  return out;
}

/** The user header jwt_authn fills from the verified `sub` claim. */
export function userHeader(): string {
  const jwt = httpFilters().find((f) => f['name'] === 'envoy.filters.http.jwt_authn')?.['typed_config'] as Json;
  const provider = Object.values(jwt['providers'] as Record<string, Json>)[0] as Json;
  const c = (provider['claim_to_headers'] as Json[]).find((x) => x['claim_name'] === 'sub');
  return String(c?.['header_name']);
}

/** Headers of a grab as Envoy sees them after jwt_authn. */
export function grabHeaders(campaignId: string, userId: string): Record<string, string> {
  return { ':method': 'POST', ':path': `/v1/campaigns/${campaignId}/grab`, [userHeader()]: userId };
}

/**
 * The keys of the edge's error shape, as envoy.yaml's local_reply_config writes Envoy's own
 * errors (every mapper has the same keys; envoy/test/envoy-config.test.ts proves it).
 */
export function errorShapeKeys(): string[] {
  const mappers = (hcm()['local_reply_config'] as Json)['mappers'] as Json[];
  const format = (mappers[0]?.['body_format_override'] as Json)['json_format'] as Json;
  return Object.keys(format).sort();
}

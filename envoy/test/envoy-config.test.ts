/**
 * envoy.yaml proven without Envoy: strictly parsed into envoy.config.bootstrap.v3.Bootstrap
 * against Envoy's own API protos (every typed_config resolved, unknown fields and bad values
 * rejected, mutated copies refused), then checked against the mesh's own contracts.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  createFileRegistry,
  fromBinary,
  fromJson,
  getOption,
  toJson,
  type DescMessage,
  type FileRegistry,
  type JsonValue,
} from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { status as grpcStatus } from '@grpc/grpc-js';
import { descriptorSetPath } from '@redpacket/proto';
import { beforeAll, describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { buildEnvoyApi, correctedValidateProto, includeDirs, xdsDeps } from './envoy-api.js';
import { pgvViolations } from './pgv.js';

const yamlText = readFileSync(new URL('../envoy.yaml', import.meta.url), 'utf8');
type Json = Record<string, unknown>;
const fresh = (): Json => parse(yamlText) as Json;

let registry: FileRegistry;
let bootstrap: DescMessage;

beforeAll(() => {
  ({ registry } = buildEnvoyApi());
  const found = registry.getMessage('envoy.config.bootstrap.v3.Bootstrap');
  if (!found) throw new Error('Bootstrap missing from the compiled Envoy API');
  bootstrap = found;
});

const strictParse = (json: unknown) => fromJson(bootstrap, json as JsonValue, { registry });

/** Every `@type` in a JSON tree, in document order. */
function typeUrls(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) node.forEach((n) => typeUrls(n, out));
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === '@type') out.push(String(v));
      else typeUrls(v, out);
    }
  }
  return out;
}

// Small accessors into the YAML (after the strict parse has proven its shape).
const listener = (j: Json, name: string): Json => {
  const found = ((j['static_resources'] as Json)['listeners'] as Json[]).find((l) => l['name'] === name);
  if (!found) throw new Error(`no listener ${name}`);
  return found;
};
const chainOf = (j: Json, name: string): Json => (listener(j, name)['filter_chains'] as Json[])[0] as Json;
const hcmOf = (j: Json, name: string): Json => (chainOf(j, name)['filters'] as Json[])[0]?.['typed_config'] as Json;
/** The HTTP connection manager of the TLS listener, which serves everything. */
const hcm = (j: Json): Json => hcmOf(j, 'https');
const routes = (j: Json): Json[] =>
  (((hcm(j)['route_config'] as Json)['virtual_hosts'] as Json[])[0] as Json)['routes'] as Json[];
const routeNamed = (j: Json, name: string): Json => {
  const r = routes(j).find((x) => x['name'] === name);
  if (!r) throw new Error(`no route ${name}`);
  return r;
};
const httpFilter = (j: Json, name: string): Json => {
  const f = (hcm(j)['http_filters'] as Json[]).find((x) => x['name'] === name);
  if (!f) throw new Error(`no http filter ${name}`);
  return f['typed_config'] as Json;
};
const clusters = (j: Json): Json[] => (j['static_resources'] as Json)['clusters'] as Json[];
const virtualHost = (j: Json): Json => ((hcm(j)['route_config'] as Json)['virtual_hosts'] as Json[])[0] as Json;
const corsPolicy = (j: Json): Json =>
  (virtualHost(j)['typed_per_filter_config'] as Json)['envoy.filters.http.cors'] as Json;
const mappers = (j: Json): Json[] => (hcm(j)['local_reply_config'] as Json)['mappers'] as Json[];
const accessLogOf = (m: Json): Json => ((m['access_log'] as Json[])[0] as Json)['typed_config'] as Json;
const tlsContext = (j: Json): Json => (chainOf(j, 'https')['transport_socket'] as Json)['typed_config'] as Json;
const plainRoutes = (j: Json): Json[] =>
  (((hcmOf(j, 'http')['route_config'] as Json)['virtual_hosts'] as Json[])[0] as Json)['routes'] as Json[];

describe('envoy.yaml against Envoy API protos (from @grpc/grpc-js-xds)', () => {
  test('the corrected validate.proto adds ignore_empty where Envoy uses it; the shipped one fails', () => {
    const text = correctedValidateProto();
    expect(text.match(/optional bool ignore_empty = \d+;/g)?.length).toBeGreaterThanOrEqual(16);
    const shippedOnly = () =>
      execFileSync(
        'protoc',
        [...includeDirs.flatMap((d) => ['-I', d]), '-o', '/dev/null', 'envoy/config/core/v3/protocol.proto'],
        { cwd: join(xdsDeps, 'envoy-api'), stdio: ['ignore', 'ignore', 'pipe'] },
      );
    expect(shippedOnly).toThrow(/ignore_empty/);
  });

  test('parses strictly into Bootstrap, every typed_config resolved', () => {
    const msg = strictParse(fresh());
    // Writing it back needs every Any's type from the registry; an unresolved one throws.
    const back = toJson(bootstrap, msg, { registry });
    const inYaml = typeUrls(fresh());
    expect(inYaml).toEqual(
      expect.arrayContaining(
        ['jwt_authn.v3.JwtAuthentication', 'ratelimit.v3.RateLimit', 'grpc_json_transcoder.v3.GrpcJsonTranscoder'].map(
          (t) => `type.googleapis.com/envoy.extensions.filters.http.${t}`,
        ),
      ),
    );
    expect(typeUrls(back).sort()).toEqual([...inYaml].sort());
    for (const url of inYaml) {
      expect(registry.getMessage(url.replace('type.googleapis.com/', '')), url).toBeDefined();
    }
  });

  const mutations: [string, (j: Json) => void, RegExp][] = [
    ['a misspelt field inside a typed_config', (j) => renameKey(hcm(j), 'stat_prefix', 'stat_prefx'), /stat_prefx/],
    [
      'a misspelt field in a route',
      (j) => renameKey(routeNamed(j, 'grab')['route'] as Json, 'rate_limits', 'rate_limit'),
      /rate_limit/,
    ],
    [
      'a misspelt rate limit action',
      (j) => {
        const actions = (((routeNamed(j, 'grab')['route'] as Json)['rate_limits'] as Json[])[0] as Json)[
          'actions'
        ] as Json[];
        renameKey(actions[1] as Json, 'request_headers', 'request_header');
      },
      /request_header/,
    ],
    [
      'a wrong @type',
      (j) => {
        const f = (hcm(j)['http_filters'] as Json[]).find((x) => x['name'] === 'envoy.filters.http.ratelimit');
        (f?.['typed_config'] as Json)['@type'] =
          'type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimits';
      },
      /RateLimits/,
    ],
    [
      'a field of another filter under the router type',
      (j) => (httpFilter(j, 'envoy.filters.http.router')['domain'] = 'redpacket'),
      /domain/,
    ],
    ['a bad enum', (j) => (hcm(j)['codec_type'] = 'AUTOMATIC'), /AUTOMATIC/],
    [
      'a bad enum inside a typed_config',
      (j) => (httpFilter(j, 'envoy.filters.http.ratelimit')['enable_x_ratelimit_headers'] = 'DRAFT_VERSION_04'),
      /DRAFT_VERSION_04/,
    ],
    [
      'a string where a port number goes',
      (j) => {
        const admin = (j['admin'] as Json)['address'] as Json;
        (admin['socket_address'] as Json)['port_value'] = 'admin';
      },
      /port_value|portValue/,
    ],
    [
      'a duration without its unit',
      (j) => (httpFilter(j, 'envoy.filters.http.ratelimit')['timeout'] = '100ms'),
      /timeout|Duration/,
    ],
    [
      'a misspelt field in a cluster protocol option',
      (j) => {
        const opts = (clusters(j)[0]?.['typed_extension_protocol_options'] as Json)[
          'envoy.extensions.upstreams.http.v3.HttpProtocolOptions'
        ] as Json;
        renameKey(opts, 'explicit_http_config', 'explicit_http2_config');
      },
      /explicit_http2_config/,
    ],
    [
      'a misspelt field in the cors policy',
      (j) => renameKey(corsPolicy(j), 'allow_origin_string_match', 'allow_origins_string_match'),
      /allow_origins_string_match/,
    ],
    [
      'a bad comparison in a local reply mapper',
      (j) => ((((mappers(j)[1]?.['filter'] as Json)['status_code_filter'] as Json)['comparison'] as Json)['op'] = 'NE'),
      /NE/,
    ],
    [
      'a misspelt field in the access log format',
      (j) => renameKey(accessLogOf(hcm(j))['log_format'] as Json, 'json_format', 'json_formats'),
      /json_formats/,
    ],
    [
      'a misspelt field in the TLS context',
      (j) => renameKey(tlsContext(j)['common_tls_context'] as Json, 'tls_certificates', 'tls_certificate'),
      /tls_certificate/,
    ],
    [
      'a misspelt redirect field',
      (j) => renameKey(plainRoutes(j)[0]?.['redirect'] as Json, 'https_redirect', 'http_redirect'),
      /http_redirect/,
    ],
  ];

  test.each(mutations)('a copy with %s is refused', (_what, mutate, message) => {
    const j = fresh();
    mutate(j);
    expect(() => strictParse(j)).toThrow(message);
  });

  // What Envoy checks next, once the config has parsed: the (validate.rules) on every field.
  test('satisfies every protoc-gen-validate rule of the API, inside every typed_config too', () => {
    expect(pgvViolations(registry, bootstrap, strictParse(fresh()))).toEqual([]);
  });

  const grabRoute = (j: Json): Json => routeNamed(j, 'grab')['route'] as Json;
  const pgvMutations: [string, (j: Json) => void, RegExp][] = [
    [
      'a health check without its timeout',
      (j) => delete ((clusters(j)[0]?.['health_checks'] as Json[])[0] as Json)['timeout'],
      /health_checks\[0\]\.timeout: required/,
    ],
    [
      'a zero connect timeout',
      (j) => ((clusters(j)[0] as Json)['connect_timeout'] = '0s'),
      /connect_timeout: duration must be gt/,
    ],
    [
      'a rate limit without actions',
      (j) => (((grabRoute(j)['rate_limits'] as Json[])[0] as Json)['actions'] = []),
      /rate_limits\[0\]\.actions: fewer than 1/,
    ],
    [
      'a rate limit stage past 10',
      (j) => (httpFilter(j, 'envoy.filters.http.ratelimit')['stage'] = 11),
      /<RateLimit>\.stage: must be <= 10/,
    ],
    [
      'an empty descriptor key',
      (j) => {
        const actions = ((grabRoute(j)['rate_limits'] as Json[])[1] as Json)['actions'] as Json[];
        ((actions[0] as Json)['request_headers'] as Json)['descriptor_key'] = '';
      },
      /descriptor_key: shorter than 1/,
    ],
    ['a cluster without a name', (j) => ((clusters(j)[0] as Json)['name'] = ''), /clusters\[0\]\.name: shorter than 1/],
    [
      'a TLS certificate without its chain',
      (j) =>
        (((tlsContext(j)['common_tls_context'] as Json)['tls_certificates'] as Json[])[0]!['certificate_chain'] = {}),
      /tls_certificates\[0\]\.certificate_chain.*required/,
    ],
    [
      'a TLS private key with an empty file name',
      (j) => {
        const cert = ((tlsContext(j)['common_tls_context'] as Json)['tls_certificates'] as Json[])[0] as Json;
        (cert['private_key'] as Json)['filename'] = '';
      },
      /private_key.*filename: shorter than 1/,
    ],
    [
      'a local reply mapper with a bad status',
      (j) => ((mappers(j)[0] as Json)['status_code'] = 99),
      /mappers\[0\]\.status_code.*must be >= 200/,
    ],
    [
      'a local reply mapper without its filter',
      (j) => delete (mappers(j)[0] as Json)['filter'],
      /mappers\[0\]\.filter: required/,
    ],
  ];

  test.each(pgvMutations)('a copy with %s breaks a validate rule', (_what, mutate, message) => {
    const j = fresh();
    mutate(j);
    const violations = pgvViolations(registry, bootstrap, strictParse(j));
    expect(violations.join('\n')).toMatch(message);
  });
});

function renameKey(o: Json, from: string, to: string): void {
  if (!(from in o)) throw new Error(`mutation target ${from} missing`);
  o[to] = o[from];
  delete o[from];
}

// ---- The mesh's own contracts -------------------------------------------------------------

interface HttpRuleShape {
  pattern: { case: string | undefined; value?: unknown };
}

/** Every method of redpacket.pb with a google.api.http rule: what end users call. */
function endUserMethods(): { service: string; method: string; verb: string; template: string }[] {
  const reg = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(descriptorSetPath)));
  const http = reg.getExtension('google.api.http');
  if (!http) throw new Error('google.api.http missing from redpacket.pb');
  const out: { service: string; method: string; verb: string; template: string }[] = [];
  for (const file of reg.files) {
    if (!file.name.startsWith('redpacket/')) continue;
    for (const svc of file.services) {
      for (const m of svc.methods) {
        const rule = getOption(m, http) as unknown as HttpRuleShape;
        if (!rule.pattern.case) continue;
        out.push({
          service: svc.typeName,
          method: m.name,
          verb: rule.pattern.case.toUpperCase(),
          template: String(rule.pattern.value),
        });
      }
    }
  }
  return out;
}

/** Envoy's route matching for what envoy.yaml uses (path, prefix, safe_regex, exact header). */
function routeMatches(route: Json, verb: string, path: string): boolean {
  const m = route['match'] as Json;
  const ok =
    (typeof m['path'] === 'string' && m['path'] === path) ||
    (typeof m['prefix'] === 'string' && path.startsWith(m['prefix'])) ||
    (m['safe_regex'] !== undefined && new RegExp(String((m['safe_regex'] as Json)['regex'])).test(path));
  if (!ok) return false;
  const headers = (m['headers'] as Json[] | undefined) ?? [];
  return headers.every((h) => h['name'] !== ':method' || (h['string_match'] as Json)['exact'] === verb);
}
const firstRoute = (j: Json, verb: string, path: string): Json | undefined =>
  routes(j).find((r) => routeMatches(r, verb, path));
const samplePath = (template: string): string => template.replace(/\{[^}]+\}/g, 'c0ffee_01');

describe('envoy.yaml against the mesh', () => {
  const j = fresh();
  const byName = new Map(clusters(j).map((c) => [String(c['name']), c]));
  const healthService = (c: Json): string =>
    String(((c['health_checks'] as Json[])[0]?.['grpc_health_check'] as Json)['service_name']);

  test('every route goes to a defined cluster, and the rate limit service is one', () => {
    const targets = routes(j)
      .filter((r) => r['route'])
      .map((r) => String((r['route'] as Json)['cluster']));
    expect(targets.length).toBeGreaterThanOrEqual(5);
    for (const t of targets) expect(byName.has(t), t).toBe(true);
    const rls = httpFilter(j, 'envoy.filters.http.ratelimit');
    const grpc = (rls['rate_limit_service'] as Json)['grpc_service'] as Json;
    const cluster = byName.get(String((grpc['envoy_grpc'] as Json)['cluster_name']));
    expect(cluster && healthService(cluster)).toBe('envoy.service.ratelimit.v3.RateLimitService');
  });

  test('every cluster speaks HTTP/2, is health-checked over gRPC and has outlier detection', () => {
    for (const c of byName.values()) {
      const opts = (c['typed_extension_protocol_options'] as Json)[
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions'
      ];
      expect((opts as Json)['explicit_http_config'], String(c['name'])).toHaveProperty('http2_protocol_options');
      expect(healthService(c)).toMatch(/\./);
      expect(c['outlier_detection']).toBeDefined();
    }
  });

  test('every end-user method has an HTTP rule and a route to the cluster that serves its service', () => {
    const methods = endUserMethods();
    const names = methods.map((m) => `${m.service}.${m.method}`).sort();
    // The public contract (docs/architecture.md): these five are called over HTTP.
    expect(names).toEqual(
      expect.arrayContaining([
        'redpacket.v1.GrabService.Grab',
        'redpacket.v1.GrabService.GetCampaign',
        'redpacket.v1.AccountService.IssueToken',
        'redpacket.v1.AccountService.GetAccount',
        'redpacket.v1.GiftService.ListMyAwards',
      ]),
    );
    const transcoded = httpFilter(j, 'envoy.filters.http.grpc_json_transcoder')['services'] as string[];
    for (const m of methods) {
      const path = samplePath(m.template);
      const route = firstRoute(j, m.verb, path);
      expect(route?.['route'], `${m.verb} ${path} (${m.method})`).toBeDefined();
      const cluster = byName.get(String((route?.['route'] as Json)['cluster']));
      expect(cluster && healthService(cluster), m.method).toBe(m.service);
      expect(transcoded).toContain(m.service);
    }
    // And no route leads upstream without a method behind it.
    for (const r of routes(j).filter((x) => x['route'])) {
      const served = methods.some((m) => firstRoute(j, m.verb, samplePath(m.template)) === r);
      expect(served, String(r['name'])).toBe(true);
    }
  });

  test('only POST /v1/tokens is reachable without a token; the identity header is the verified sub', () => {
    const jwt = httpFilter(j, 'envoy.filters.http.jwt_authn');
    const rules = jwt['rules'] as Json[];
    const requires = (path: string): unknown =>
      rules.find((r) => routeMatches({ match: r['match'] }, 'ANY', path))?.['requires'];
    for (const m of endUserMethods()) {
      const path = samplePath(m.template);
      if (m.method === 'IssueToken') expect(requires(path), path).toBeUndefined();
      else expect(requires(path), path).toBeDefined();
    }
    const provider = Object.values(jwt['providers'] as Record<string, Json>)[0] as Json;
    expect(provider['forward']).toBe(true);
    // the same issuer and audience every service accepts (JWT_ISSUER, JWT_AUDIENCE defaults)
    expect(provider['issuer']).toBe('redpacket');
    expect(provider['audiences']).toEqual(['redpacket-mesh']);
    const claimHeader = (provider['claim_to_headers'] as Json[]).find((c) => c['claim_name'] === 'sub');
    const header = String(claimHeader?.['header_name']);
    // The header the per-user rate limit reads is the claim header...
    const grabLimits = (routeNamed(j, 'grab')['route'] as Json)['rate_limits'] as Json[];
    const readHeaders = grabLimits.flatMap((l) =>
      (l['actions'] as Json[]).map((a) => (a['request_headers'] as Json | undefined)?.['header_name']),
    );
    expect(readHeaders).toContain(header);
    // ...and a client cannot send it: it is removed before any filter runs.
    const early = hcm(j)['early_header_mutation_extensions'] as Json[];
    const removed = early.flatMap((e) => ((e['typed_config'] as Json)['mutations'] as Json[]).map((x) => x['remove']));
    expect(removed).toContain(header);
  });

  test('x-request-id is made at the edge, returned to the client, and nothing strips it on the way', () => {
    const m = hcm(j);
    expect(m['generate_request_id']).toBe(true);
    expect(m['preserve_external_request_id']).toBe(false);
    expect(m['always_set_request_id_in_response']).toBe(true);
    const early = (m['early_header_mutation_extensions'] as Json[] | undefined) ?? [];
    const removed = early.flatMap((e) => ((e['typed_config'] as Json)['mutations'] as Json[]).map((x) => x['remove']));
    expect(removed).not.toContain('x-request-id');
    const text = JSON.stringify(j).toLowerCase();
    // no request_headers_to_remove (route, virtual host or transcoder) names it
    expect(text.match(/"request_headers_to_remove":\[[^\]]*x-request-id/)).toBeNull();
  });

  test('filters run in the order of the grab: HSTS, cors, jwt_authn, ratelimit, transcoder, router', () => {
    const names = (hcm(j)['http_filters'] as Json[]).map((f) => f['name']);
    expect(names).toEqual([
      'envoy.filters.http.header_mutation',
      'envoy.filters.http.cors',
      'envoy.filters.http.jwt_authn',
      'envoy.filters.http.ratelimit',
      'envoy.filters.http.grpc_json_transcoder',
      'envoy.filters.http.router',
    ]);
    // The admin listener (stats for Prometheus) answers on the compose network, never on the host:
    // docker-compose.yml publishes the public listener's port only.
    const admin = ((j['admin'] as Json)['address'] as Json)['socket_address'] as Json;
    expect(admin['port_value']).toBe(9901);
    const compose = readFileSync(fileURLToPath(new URL('../../docker-compose.yml', import.meta.url)), 'utf8');
    expect(compose).not.toMatch(/['"]?\d*:?9901['"]?\s*[\],]/);
    expect(compose).toContain("ports: ['8443:8443', '8080:8080']");
  });

  test('only idempotent calls are retried on failures after the request may have arrived', () => {
    for (const m of endUserMethods()) {
      const route = firstRoute(j, m.verb, samplePath(m.template))?.['route'] as Json;
      const retryOn = String((route['retry_policy'] as Json | undefined)?.['retry_on'] ?? '');
      const afterArrival = retryOn.split(',').filter((c) => !['connect-failure', 'refused-stream'].includes(c));
      if (m.verb === 'GET') expect(afterArrival.length, m.method).toBeGreaterThan(0);
      else expect(afterArrival, m.method).toEqual([]);
    }
  });
});

// ---- The public edge: TLS, redirects, HSTS, CORS, the error shape, the access log ----------

/** Envoy's AccessLogFilter for what local_reply_config uses: status codes, and, or. */
function filterMatches(f: Json, code: number): boolean {
  const sc = f['status_code_filter'] as Json | undefined;
  if (sc) {
    const cmp = sc['comparison'] as Json;
    const v = Number((cmp['value'] as Json)['default_value']);
    const op = String(cmp['op'] ?? 'EQ');
    if (op === 'EQ') return code === v;
    if (op === 'GE') return code >= v;
    if (op === 'LE') return code <= v;
    throw new Error(`comparison ${op} is not modelled`);
  }
  const and = f['and_filter'] as Json | undefined;
  if (and) return (and['filters'] as Json[]).every((x) => filterMatches(x, code));
  const or = f['or_filter'] as Json | undefined;
  if (or) return (or['filters'] as Json[]).some((x) => filterMatches(x, code));
  throw new Error(`access log filter ${Object.keys(f).join()} is not modelled`);
}

describe('envoy.yaml: the public edge', () => {
  const j = fresh();
  const compose = parse(readFileSync(fileURLToPath(new URL('../../docker-compose.yml', import.meta.url)), 'utf8'), {
    merge: true,
  }) as Json;
  const envoySvc = (compose['services'] as Record<string, Json>)['envoy'] as Json;
  const port = (name: string): number =>
    Number(((listener(j, name)['address'] as Json)['socket_address'] as Json)['port_value']);

  test('the TLS listener serves with the mounted certificate, TLS 1.2 or later, h2 by ALPN', () => {
    const tls = tlsContext(j);
    expect(tls['@type']).toBe('type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext');
    const common = tls['common_tls_context'] as Json;
    expect((common['tls_params'] as Json)['tls_minimum_protocol_version']).toBe('TLSv1_2');
    expect(common['alpn_protocols']).toEqual(['h2', 'http/1.1']);
    const [cert] = common['tls_certificates'] as Json[];
    const files = [cert?.['certificate_chain'], cert?.['private_key']].map((d) => String((d as Json)['filename']));
    // docker-compose.yml mounts the operator's certificates at that directory, read-only
    const dirs = new Set(files.map((f) => f.slice(0, f.lastIndexOf('/'))));
    expect([...dirs]).toEqual(['/etc/envoy/certs']);
    // (the host side is `${EDGE_CERTS_DIR:-./certs}`; compose.test.ts checks it resolved)
    expect(envoySvc['volumes']).toContainEqual(expect.stringMatching(/certs\}?:\/etc\/envoy\/certs:ro$/));
    expect(port('https')).toBe(8443);
  });

  test('plain HTTP only redirects, to the TLS port, keeping the method; nothing else is served', () => {
    const m = hcmOf(j, 'http');
    const vhosts = (m['route_config'] as Json)['virtual_hosts'] as Json[];
    const all = vhosts.flatMap((v) => v['routes'] as Json[]);
    expect(all.length).toBeGreaterThan(0);
    for (const r of all) {
      expect(r['route'] ?? r['direct_response']).toBeUndefined();
      expect(r['redirect']).toEqual({
        https_redirect: true,
        port_redirect: port('https'),
        response_code: 'PERMANENT_REDIRECT',
      });
    }
    // every path is redirected
    expect(routeMatches(all[0] as Json, 'POST', '/v1/campaigns/c/grab')).toBe(true);
    expect((m['http_filters'] as Json[]).map((f) => f['name'])).toEqual(['envoy.filters.http.router']);
  });

  test("HSTS on every answer of the TLS listener, Envoy's own replies too; never over plain HTTP", () => {
    const filters = hcm(j)['http_filters'] as Json[];
    expect(filters[0]?.['name']).toBe('envoy.filters.http.header_mutation');
    const mutations = ((filters[0]?.['typed_config'] as Json)['mutations'] as Json)['response_mutations'] as Json[];
    const hsts = mutations
      .map((x) => (x['append'] as Json | undefined)?.['header'] as Json | undefined)
      .find((h) => h?.['key'] === 'strict-transport-security');
    const maxAge = Number(/max-age=(\d+)/.exec(String(hsts?.['value']))?.[1]);
    expect(maxAge).toBeGreaterThanOrEqual(31_536_000);
    expect(JSON.stringify(hcmOf(j, 'http'))).not.toContain('strict-transport-security');
  });

  test('CORS: explicit origins, before jwt_authn (a preflight has no token), the headers an H5 page needs', () => {
    const names = (hcm(j)['http_filters'] as Json[]).map((f) => f['name']);
    expect(names.indexOf('envoy.filters.http.cors')).toBeLessThan(names.indexOf('envoy.filters.http.jwt_authn'));
    const policy = corsPolicy(j);
    const origins = policy['allow_origin_string_match'] as Json[];
    expect(origins.length).toBeGreaterThan(0);
    for (const o of origins) {
      // an origin is a whole scheme://host[:port], never a wildcard
      expect(Object.keys(o)).toEqual(['exact']);
      expect(String(o['exact'])).toMatch(/^https?:\/\/[a-z0-9.-]+(:\d+)?$/);
    }
    const list = (k: string) =>
      String(policy[k])
        .split(',')
        .map((x) => x.trim().toLowerCase());
    const verbs = [...new Set(endUserMethods().map((m) => m.verb))];
    expect(list('allow_methods')).toEqual(expect.arrayContaining([...verbs, 'OPTIONS'].map((v) => v.toLowerCase())));
    expect(list('allow_headers')).toEqual(expect.arrayContaining(['authorization', 'content-type']));
    expect(list('expose_headers')).toEqual(
      expect.arrayContaining(['x-request-id', 'x-redpacket-reason', 'retry-after']),
    );
    expect(policy['allow_credentials']).toBe(false);
  });

  test('every local reply but a 429 is the one JSON shape, its code the gRPC code its reason names', () => {
    const ms = mappers(j);
    for (const m of ms) {
      const format = (m['body_format_override'] as Json)['json_format'] as Json;
      expect(Object.keys(format).sort()).toEqual(['code', 'message', 'reason']);
      expect(Number.isInteger(format['code'])).toBe(true);
      // reason is the name of the gRPC code (grpc-js's status enum), so the two never disagree
      expect(grpcStatus[format['code'] as number]).toBe(format['reason']);
      expect(format['message']).toBe('%LOCAL_REPLY_BODY%');
      expect(m['status_code']).toBeUndefined();
    }
    const expected: Record<number, string> = {
      400: 'INVALID_ARGUMENT',
      401: 'UNAUTHENTICATED',
      403: 'PERMISSION_DENIED',
      404: 'NOT_FOUND',
      503: 'UNAVAILABLE',
      504: 'DEADLINE_EXCEEDED',
    };
    for (let code = 400; code < 600; code++) {
      // Envoy uses the first mapper that matches
      const first = ms.find((m) => filterMatches(m['filter'] as Json, code));
      const reason = first && ((first['body_format_override'] as Json)['json_format'] as Json)['reason'];
      if (code === 429) expect(first, "a 429 keeps gateway's body").toBeUndefined();
      else expect(reason, String(code)).toBe(expected[code] ?? (code === 413 ? 'RESOURCE_EXHAUSTED' : 'UNKNOWN'));
    }
    for (let code = 200; code < 400; code++) {
      expect(
        ms.some((m) => filterMatches(m['filter'] as Json, code)),
        String(code),
      ).toBe(false);
    }
    // no route's direct response can bypass the mappers with a body of its own
    expect(routes(j).filter((r) => r['direct_response'])).toEqual([]);
    // jwt_authn refuses with 401 (no or bad token) and 403 (audience): both mapped
    expect(ms.some((m) => filterMatches(m['filter'] as Json, 401))).toBe(true);
  });

  test('one JSON access log line per request on both listeners: user, campaign path, outcome, latency', () => {
    const jwt = httpFilter(j, 'envoy.filters.http.jwt_authn');
    const provider = Object.values(jwt['providers'] as Record<string, Json>)[0] as Json;
    const userHeader = String(
      (provider['claim_to_headers'] as Json[]).find((c) => c['claim_name'] === 'sub')?.['header_name'],
    );
    for (const name of ['https', 'http']) {
      const log = accessLogOf(hcmOf(j, name));
      expect(log['@type']).toBe('type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog');
      const f = (log['log_format'] as Json)['json_format'] as Json;
      expect(f).toMatchObject({
        request_id: '%REQ(X-REQUEST-ID)%',
        user: `%REQ(${userHeader.toUpperCase()})%`,
        path: '%REQ_WITHOUT_QUERY(:PATH)%',
        route: '%ROUTE_NAME%',
        status: '%RESPONSE_CODE%',
        reason: '%RESP(X-REDPACKET-REASON)%',
        grpc_status: '%GRPC_STATUS%',
        duration_ms: '%DURATION%',
      });
      // every value is one command operator, so Envoy writes it typed (numbers as numbers)
      for (const [k, v] of Object.entries(f)) expect(String(v), k).toMatch(/^%[A-Z_]+(\([^)]*\))?%$/);
    }
  });
});

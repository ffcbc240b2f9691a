/**
 * `redpacket bench`: ghz's main flags, its JSON config file and its JSON report on top of
 * @redpacket/loadgen (pre-encoded frames over node:http2 in worker threads), with --baseline to
 * show the tool's own ceiling.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { randomBytes, randomUUID } from 'node:crypto';
import { Command, Option } from 'commander';
import type { TokenSigner } from '@redpacket/lib';
import {
  ECHO_PATH,
  echoServerScript,
  freePort,
  grpcFrame,
  h2load,
  runLoad,
  spawnNode,
  type LoadReport,
  type PreparedRequest,
} from '@redpacket/loadgen';
import { action, examples } from '../action.js';
import { signUserTokens } from '../tokens.js';
import type { CliContext } from '../context.js';
import { usageError } from '../errors.js';
import { findMethod, type BenchMethod } from '../bench/methods.js';
import { latencyDistribution, toGhzReport, type GhzReport } from '../bench/report.js';
import { compile, type TemplateVars } from '../bench/template.js';
import { table } from '../format.js';
import { asDuration, asInt, durationMs } from '../parse.js';

export interface BenchOptions {
  /** Required, from the command line or the --config file. */
  call?: string;
  /** A ghz JSON config (`ghz --config`): fills what the command line does not give. */
  config?: string;
  concurrency: number;
  total: number;
  duration: number;
  rps: number;
  connections: number;
  cpus?: number;
  data?: string;
  dataFile?: string;
  metadata?: string;
  metadataFile?: string;
  tokenPerUser: number;
  userPrefix?: string;
  admin?: boolean;
  format: 'summary' | 'json' | 'pretty';
  output?: string;
  baseline?: boolean;
  prepared: number;
  insecure?: boolean;
}

const VARIABLES = [
  'RequestNumber',
  'FullyQualifiedName',
  'MethodName',
  'ServiceName',
  'InputName',
  'OutputName',
  'IsClientStreaming',
  'IsServerStreaming',
  'Timestamp',
  'TimestampUnix',
  'TimestampUnixMilli',
  'TimestampUnixNano',
  'UUID',
  'UserId',
  'UserNumber',
  'Token',
];

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw usageError(`${what} is not valid JSON after templating: ${(err as Error).message}\n  ${text.slice(0, 200)}`);
  }
}

/** ghz: a JSON array of call data (or of metadata) is used round-robin, one element per call. */
const roundRobin = (v: unknown, k: number): unknown => (Array.isArray(v) ? v[k % v.length] : v);

/** Checks the shape of -m/-M: an object, or an array of objects (templates stood in for by 0). */
function checkMetadata(text: string): void {
  const md = parseJson(text.replace(/\{\{.*?\}\}/g, '0'), '-m metadata');
  const ok = (m: unknown): boolean => !!m && typeof m === 'object' && !Array.isArray(m);
  if (Array.isArray(md) ? !md.every(ok) : !ok(md))
    throw usageError('-m metadata must be a JSON object or array of objects');
}

/** Renders and encodes every request up front, so the load workers only write bytes. */
export async function prepareRequests(
  method: BenchMethod,
  o: BenchOptions,
  /** Asked only when tokens are to be signed: a bench with its own token needs no key. */
  signer: () => TokenSigner,
  staticToken: string | undefined,
): Promise<PreparedRequest[]> {
  const dataText = o.dataFile !== undefined ? readFileSync(o.dataFile, 'utf8') : (o.data ?? '{}');
  const data = compile(dataText, VARIABLES);
  const users = o.tokenPerUser;
  const prefix = o.userPrefix ?? `bench-${randomBytes(3).toString('hex')}-`;
  const tokens = users > 0 ? await signUserTokens(signer(), prefix, users) : [];
  const token = o.admin ? await signer().sign({ userId: 'bench-admin', role: 'admin' }) : staticToken;
  const mdText = o.metadataFile !== undefined ? readFileSync(o.metadataFile, 'utf8') : (o.metadata ?? '{}');
  checkMetadata(mdText);
  // the token each call carries when the metadata sets no authorization of its own
  const authorization =
    users > 0 ? (v: TemplateVars) => `Bearer ${String(v['Token'])}` : token ? () => `Bearer ${token}` : undefined;
  const meta = compile(mdText, VARIABLES);
  const count = o.duration > 0 ? o.prepared : o.total;
  const now = Date.now();
  const fixed: TemplateVars = {
    FullyQualifiedName: method.fullName,
    MethodName: method.method,
    ServiceName: method.service,
    InputName: method.inputName,
    OutputName: method.outputName,
    IsClientStreaming: false,
    IsServerStreaming: false,
  };
  const vars = (k: number): TemplateVars => {
    const u = users > 0 ? k % users : 0;
    const t = now + k;
    return {
      ...fixed,
      RequestNumber: k,
      Timestamp: new Date(t).toISOString(),
      TimestampUnix: Math.floor(t / 1000),
      TimestampUnixMilli: t,
      TimestampUnixNano: `${t}000000`,
      UUID: randomUUID(),
      UserNumber: u,
      UserId: users > 0 ? `${prefix}${u}` : '',
      Token: tokens[u] ?? token ?? '',
    };
  };
  const echo = method.path === ECHO_PATH;
  const bodyOf = (k: number, v: TemplateVars): Buffer => {
    const text = data.render(v);
    return grpcFrame(method.encode(echo ? text : roundRobin(parseJson(text, 'call data'), k)));
  };
  const headersOf = (k: number, v: TemplateVars): Record<string, string> => {
    const md = roundRobin(parseJson(meta.render(v), '-m metadata'), k) as Record<string, unknown>;
    const h = Object.fromEntries(Object.entries(md).map(([name, value]) => [name.toLowerCase(), String(value)]));
    if (authorization && h['authorization'] === undefined) h['authorization'] = authorization(v);
    return h;
  };
  // static templates are rendered once per distinct value and shared by the requests using it
  const cached = <T>(isStatic: boolean, size: number, make: (k: number, v: TemplateVars) => T) => {
    const cache = new Map<number, T>();
    return (k: number, v: () => TemplateVars): T => {
      if (!isStatic) return make(k, v());
      const i = k % size;
      let hit = cache.get(i);
      if (hit === undefined) cache.set(i, (hit = make(k, v())));
      return hit;
    };
  };
  const arrayLength = (text: string, what: string): number => {
    const parsed = parseJson(text, what);
    return Array.isArray(parsed) ? Math.max(1, parsed.length) : 1;
  };
  const body = cached(data.isStatic, data.isStatic && !echo ? arrayLength(dataText, 'call data') : 1, bodyOf);
  // per-user tokens make every call's headers different, whatever the template
  const staticHeaders = meta.isStatic && users === 0;
  const headers = cached(staticHeaders, staticHeaders ? arrayLength(mdText, '-m metadata') : 1, headersOf);
  const out: PreparedRequest[] = new Array(count);
  for (let k = 0; k < count; k++) {
    let v: TemplateVars | undefined;
    const lazy = (): TemplateVars => (v ??= vars(k));
    out[k] = { body: body(k, lazy), headers: headers(k, lazy) };
  }
  return out;
}

const FORMATS = ['summary', 'json', 'pretty'] as const;

/** ghz's config keys (its runner/config.go) that bench honours, beside the command-line flags. */
const GHZ_KEYS = [
  'call',
  'host',
  'total',
  'concurrency',
  'connections',
  'rps',
  'cpus',
  'duration',
  'data',
  'data-file',
  'metadata',
  'metadata-file',
  'format',
  'output',
  'insecure',
];
/** Keys that change nothing here: the methods come from the mesh's descriptor set; labels. */
const GHZ_KEYS_WITHOUT_EFFECT = ['proto', 'protoset', 'import-paths', 'name', 'tags'];

/** A ghz JSON config, read as bench options; `host` is the target's host:port. */
export interface GhzConfig {
  host?: string;
  options: Partial<BenchOptions>;
}

/**
 * Reads a ghz JSON config file. A key bench cannot honour (a TLS setting, a load schedule, ...)
 * is refused with its name rather than ignored, so a run never differs silently from ghz's.
 */
export function readGhzConfig(path: string): GhzConfig {
  const what = `--config ${path}`;
  let cfg: unknown;
  try {
    cfg = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw usageError(`${what}: ${(err as Error).message}`);
  }
  if (!cfg || typeof cfg !== 'object' || Array.isArray(cfg)) throw usageError(`${what}: not a JSON object`);
  const str = (k: string, v: unknown): string => {
    if (typeof v !== 'string' || v === '') throw usageError(`${what}: "${k}" must be a non-empty string`);
    return v;
  };
  const int = (k: string, v: unknown, min: number): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min)
      throw usageError(`${what}: "${k}" must be an integer of at least ${min}`);
    return v;
  };
  const out: GhzConfig = { options: {} };
  const o = out.options;
  for (const [k, v] of Object.entries(cfg)) {
    if (GHZ_KEYS_WITHOUT_EFFECT.includes(k)) continue;
    if (!GHZ_KEYS.includes(k))
      throw usageError(`${what}: ghz key "${k}" is not supported by redpacket bench (it reads ${GHZ_KEYS.join(', ')})`);
    if (k === 'call') o.call = str(k, v);
    else if (k === 'host') out.host = str(k, v);
    else if (k === 'total') o.total = int(k, v, 0);
    else if (k === 'concurrency') o.concurrency = int(k, v, 1);
    else if (k === 'connections') o.connections = int(k, v, 1);
    else if (k === 'rps') o.rps = int(k, v, 0);
    else if (k === 'cpus') o.cpus = int(k, v, 1);
    // ghz writes a Go duration ("10s", "500ms")
    else if (k === 'duration') o.duration = durationMs(str(k, v), `${what}: "duration"`);
    // objects (or arrays, round-robin) in the file; their templates render as the flags' do
    else if (k === 'data') o.data = JSON.stringify(v);
    else if (k === 'metadata') o.metadata = JSON.stringify(v);
    else if (k === 'data-file') o.dataFile = str(k, v);
    else if (k === 'metadata-file') o.metadataFile = str(k, v);
    else if (k === 'output') o.output = str(k, v);
    else if (k === 'format') {
      const f = str(k, v);
      if (!(FORMATS as readonly string[]).includes(f))
        throw usageError(`${what}: "format" ${f} is not one bench writes (${FORMATS.join(', ')})`);
      o.format = f as BenchOptions['format'];
    } else if (k === 'insecure' && v !== true)
      throw usageError(`${what}: "insecure" must be true: bench speaks plaintext HTTP/2 only`);
  }
  return out;
}

/**
 * Options and host of a run with --config: what the command line gave wins (as a -d wins over
 * the file's data-file too), the file fills the rest, and the defaults what neither gives.
 */
export function withGhzConfig(
  o: BenchOptions,
  host: string | undefined,
  cfg: GhzConfig,
  fromCommandLine: (option: keyof BenchOptions) => boolean,
): { options: BenchOptions; host: string | undefined } {
  const options: BenchOptions = { ...o };
  const groups: (keyof BenchOptions)[][] = [
    ['data', 'dataFile'],
    ['metadata', 'metadataFile'],
  ];
  for (const [k, v] of Object.entries(cfg.options) as [keyof BenchOptions, unknown][]) {
    const group = groups.find((g) => g.includes(k)) ?? [k];
    if (!group.some(fromCommandLine)) Object.assign(options, { [k]: v });
  }
  return { options, host: host ?? cfg.host };
}

function summary(r: GhzReport, call: string, target: string): string {
  const ms = (n: number): string => `${(n / 1e6).toFixed(2)} ms`;
  const lines = [
    `Summary: ${call} on ${target}`,
    table(
      ['count', 'total', 'slowest', 'fastest', 'average', 'requests/s'],
      [[String(r.count), ms(r.total), ms(r.slowest), ms(r.fastest), ms(r.average), r.rps.toFixed(2)]],
    ),
    'Response time histogram:',
    ...r.histogram.map((b) => {
      const max = Math.max(...r.histogram.map((x) => x.count), 1);
      return `  ${(b.mark * 1000).toFixed(3).padStart(10)} ms [${String(b.count).padStart(7)}] |${'∎'.repeat(Math.round((b.count / max) * 40))}`;
    }),
    'Latency distribution:',
    ...r.latencyDistribution.map((l) => `  ${l.percentage} % in ${ms(l.latency)}`),
    'Status code distribution:',
    ...Object.entries(r.statusCodeDistribution).map(([k, v]) => `  [${k}] ${v} responses`),
  ];
  const errs = Object.entries(r.errorDistribution);
  if (errs.length) lines.push('Error distribution:', ...errs.map(([k, v]) => `  [${v}] ${k}`));
  if (r.baseline) lines.push(baselineLine(r.rps, r.baseline));
  return lines.join('\n');
}

export function baselineLine(targetRps: number, b: NonNullable<GhzReport['baseline']>): string {
  const ratio = targetRps / b.rps;
  const verdict =
    ratio > 0.8
      ? 'the target runs near what this tool and host can drive: treat its figure as a lower bound'
      : 'well below the ceiling: the figure is the server, not the tool';
  const native =
    b.h2loadRps !== undefined
      ? ` (h2load, a native client, drove the same echo server at ${b.h2loadRps.toFixed(0)} req/s` +
        (b.rps < 0.5 * b.h2loadRps ? ': on this host bench itself is the limit above that figure)' : ')')
      : '';
  return (
    `Ceiling: the same load against a bare grpc-js echo server ran at ${b.rps.toFixed(0)} req/s${native}; ` +
    `the target reached ${(ratio * 100).toFixed(0)}% of it (${verdict}).`
  );
}

/**
 * The same requests against loadgen's echo server: what this tool can drive on this host; and,
 * where h2load is installed, what a native client drives on the same server (one request's
 * body and headers, since h2load cannot vary them).
 */
export async function echoBaseline(
  load: (target: string, path: string) => Promise<LoadReport>,
  sample: PreparedRequest,
  o: { total: number; concurrency: number; connections: number },
): Promise<NonNullable<GhzReport['baseline']>> {
  const port = await freePort();
  const echo = spawnNode(echoServerScript, [String(port)]);
  try {
    await echo.waitFor(/^listening/);
    const r = await load(`http://127.0.0.1:${port}`, ECHO_PATH);
    const out: NonNullable<GhzReport['baseline']> = {
      rps: r.rps,
      targetOverEcho: 0,
      echoLatencyDistribution: latencyDistribution(r.latenciesMs),
    };
    try {
      const clients = Math.max(1, o.connections);
      const h2 = await h2load({
        url: `http://127.0.0.1:${port}${ECHO_PATH}`,
        body: sample.body,
        headers: sample.headers ?? {},
        requests: Math.max(1000, Math.min(o.total, 100_000)),
        clients,
        streams: Math.ceil(o.concurrency / clients),
      });
      out.h2loadRps = h2.rps;
    } catch (err) {
      out.h2loadError = (err as Error).message.split('\n')[0];
    }
    return out;
  } finally {
    await echo.stop();
  }
}

async function bench(ctx: CliContext, host: string | undefined, o: BenchOptions): Promise<void> {
  if (o.call === undefined) throw usageError('--call <method> is required (or "call" in the --config file)');
  if (o.total < 1 && o.duration === 0) throw usageError('-n must be at least 1 (or give -z)');
  const method = findMethod(o.call);
  const target = host ?? ctx.opts.grabAddr;
  const requests = await prepareRequests(method, o, () => ctx.signer, ctx.opts.token);
  const load = (url: string, path: string): Promise<LoadReport> =>
    runLoad({
      target: url,
      path,
      requests,
      concurrency: o.concurrency,
      connections: o.connections,
      workers: o.cpus,
      durationMs: o.duration,
      rps: o.rps,
    });
  const report = await load(`http://${target}`, method.path);
  const options = {
    call: method.fullName,
    host: target,
    total: o.duration > 0 ? undefined : o.total,
    concurrency: o.concurrency,
    connections: o.connections,
    duration: o.duration > 0 ? o.duration * 1e6 : undefined,
    rps: o.rps,
    tokenPerUser: o.tokenPerUser || undefined,
    cpus: o.cpus,
  };
  const ghz = toGhzReport(report, options, o.duration > 0);
  if (o.baseline) {
    const baseline = await echoBaseline(load, requests[0]!, o);
    ghz.baseline = { ...baseline, targetOverEcho: report.rps / baseline.rps };
  }
  const format = ctx.json && o.format === 'summary' ? 'json' : o.format;
  const text =
    format === 'summary'
      ? summary(ghz, method.fullName, target)
      : JSON.stringify(ghz, null, format === 'pretty' ? 2 : undefined);
  if (o.output) writeFileSync(o.output, `${text}\n`);
  else process.stdout.write(`${text}\n`);
}

export function benchCommand(): Command {
  const cmd = new Command('bench');
  const run = (ctx: CliContext, host: string | undefined, o: BenchOptions): Promise<void> => {
    if (o.config === undefined) return bench(ctx, host, o);
    const merged = withGhzConfig(o, host, readGhzConfig(o.config), (k) => cmd.getOptionValueSource(k) === 'cli');
    return bench(ctx, merged.host, merged.options);
  };
  return examples(
    cmd
      .argument('[host]', 'host:port of the server (default: the --config host, else --grab-addr)')
      .description(
        "a gRPC load generator with ghz's flags and JSON report, for hosts without ghz; --baseline shows its own ceiling",
      )
      .option('--call <method>', 'fully qualified method, e.g. redpacket.v1.GrabService.Grab (or bench.Echo.Echo)')
      .option(
        '--config <path>',
        'a ghz JSON config (ghz --config): its keys fill what the command line leaves out (see bench/README.md)',
      )
      .option('-c, --concurrency <n>', 'requests in flight', asInt('-c', 1, 100_000), 50)
      .option('-n, --total <n>', 'number of requests', asInt('-n', 0, 5_000_000), 200)
      .option('-z, --duration <duration>', 'run this long instead of -n (e.g. 10s)', asDuration('-z'), 0)
      .option('--rps <n>', 'total request rate (0: as fast as possible)', asInt('--rps', 0), 0)
      .option('--connections <n>', 'HTTP/2 connections (at least one per worker)', asInt('--connections', 1), 1)
      .option('--cpus <n>', 'load worker threads (default: up to 2)', asInt('--cpus', 1, 64))
      .option(
        '-d, --data <json>',
        'call data as JSON (an array: one element per call, round-robin), templated per request',
      )
      .option('-D, --data-file <path>', 'call data from a file')
      .option('-m, --metadata <json>', 'metadata as a JSON object (or array, round-robin), templated per request')
      .option('-M, --metadata-file <path>', 'metadata from a file (e.g. redpacket token ... --count n --ghz-metadata)')
      .option(
        '--token-per-user <n>',
        'sign n user tokens with JWT_PRIVATE_KEY_FILE; call k carries user k % n',
        asInt('--token-per-user', 0),
        0,
      )
      .option('--user-prefix <prefix>', 'user ids of --token-per-user are prefix0..prefix{n-1}')
      .option('--admin', 'send one admin token signed with JWT_PRIVATE_KEY_FILE')
      .addOption(new Option('-O, --format <format>', 'output format').choices(FORMATS).default('summary'))
      .option('-o, --output <path>', 'write the report to a file')
      .option('--baseline', "also run the same load against loadgen's echo server and print the ratio")
      .option('--prepared <n>', 'distinct requests rendered for -z (cycled)', asInt('--prepared', 1, 1_000_000), 10_000)
      .option('--insecure', 'accepted for ghz compatibility (bench always uses plaintext)')
      .addHelpText(
        'after',
        `
Templates in -d and -m (rendered once per request before the load starts):
  {{.RequestNumber}} {{.FullyQualifiedName}} {{.MethodName}} {{.ServiceName}} {{.InputName}}
  {{.OutputName}} {{.Timestamp}} {{.TimestampUnix}} {{.TimestampUnixMilli}} {{.TimestampUnixNano}}
  {{.UUID}} {{newUUID}} {{randomString 8}} {{randomInt 0 100}}
  with --token-per-user: {{.UserId}} {{.UserNumber}} {{.Token}} (authorization is added unless -m sets it)
The report is ghz's (-O json): count, total, average, fastest, slowest (ns), rps,
latencyDistribution, histogram, statusCodeDistribution, errorDistribution; --baseline adds
"baseline": the same requests against loadgen's bare grpc-js echo server, started for the run.`,
      )
      .action(action(run)),
    [
      'redpacket bench --call redpacket.v1.GrabService.Grab -n 20000 -c 200 --connections 4 --token-per-user 20000 \\\n      -d \'{"campaign_id":"Xy3kQ9","request_id":"r{{.RequestNumber}}"}\' --baseline',
      'redpacket bench --call redpacket.v1.GrabService.GetCampaign -z 10s -c 100 --admin -d \'{"campaign_id":"Xy3kQ9"}\' -O json',
      'redpacket bench --call redpacket.v1.GrabService.Grab -n 1000 -m \'{"authorization":"Bearer {{.Token}}","x-request":"{{randomString 8}}"}\' \\\n      --token-per-user 100 -d \'{"campaign_id":"Xy3kQ9"}\'',
      'redpacket bench 127.0.0.1:17301 --call bench.Echo.Echo -n 5000 -d hello',
      "redpacket bench 127.0.0.1:50051 --config ghz-grab.json -n 2000   # ghz's config; the flags win",
    ],
  );
}

/**
 * deploy/k8s/: every object checked against Kubernetes' own schemas (kubernetes-models' validate(),
 * generated from the API's OpenAPI), the kustomization against the folder, and the objects against
 * each other and against what they stand for: docker-compose.yml's commands and environment, the
 * env each service's main reads, envoy/envoy.yaml's clusters and files, the Dockerfile's Envoy tag.
 * Broken copies are refused. kubectl is not installable from Debian, so the kustomization is
 * checked here: resources exist, none twice, none left out.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Deployment, type IDeployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler, type IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { EndpointSlice, type IEndpointSlice } from 'kubernetes-models/discovery.k8s.io/v1';
import { PodDisruptionBudget, type IPodDisruptionBudget } from 'kubernetes-models/policy/v1';
import {
  ConfigMap,
  Namespace,
  Secret,
  Service,
  type IConfigMap,
  type IContainer,
  type IProbe,
  type ISecret,
  type IService,
} from 'kubernetes-models/v1';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { z } from 'zod';

const root = fileURLToPath(new URL('../..', import.meta.url));
const read = (path: string): string => readFileSync(join(root, path), 'utf8');
const dir = 'deploy/k8s';

/** The four Node services, and the files whose Env schema lists what each reads (all extend lib's BaseEnv). */
const SERVICES = {
  'grab-svc': ['lib/src/config.ts', 'grab-svc/src/main.ts', 'grab-svc/src/relay/relay-env.ts'],
  'account-svc': ['lib/src/config.ts', 'account-svc/src/main.ts'],
  'gift-svc': ['lib/src/config.ts', 'gift-svc/src/main.ts'],
  gateway: ['lib/src/config.ts', 'gateway/src/main.ts'],
} as const;
type ServiceName = keyof typeof SERVICES;

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'discovery.k8s.io/v1/EndpointSlice': EndpointSlice,
};

const Kustomization = z
  .object({
    apiVersion: z.literal('kustomize.config.k8s.io/v1beta1'),
    kind: z.literal('Kustomization'),
    namespace: z.string().regex(/^[a-z0-9-]+$/),
    resources: z.array(z.string().min(1)).min(1),
    images: z.array(z.object({ name: z.string(), newName: z.string(), newTag: z.string() }).strict()),
    configMapGenerator: z.array(
      z.object({ name: z.string(), files: z.array(z.string().regex(/^[\w.-]+=[\w./-]+$/)).min(1) }).strict(),
    ),
  })
  .strict();
type Kustomization = z.infer<typeof Kustomization>;

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
}

/** What is checked: the kustomization, the folder's files, and each resource file's objects. */
interface Manifests {
  kustomization: unknown;
  folder: string[];
  objects: Map<string, unknown[]>;
}

/** What the manifests stand for, read from the rest of the repo. */
interface Context {
  compose: Record<string, { command: string[]; environment: Record<string, string> }>;
  reads: Record<ServiceName, Set<string>>;
  /** envoy.yaml's upstreams (address:port) and the files it opens. */
  envoyUpstreams: string[];
  envoyFiles: string[];
  envoyTag: string;
}

function loadManifests(): Manifests {
  const folder = readdirSync(join(root, dir)).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
  const objects = new Map<string, unknown[]>();
  for (const file of folder) {
    const docs = parseAllDocuments(read(`${dir}/${file}`));
    if (!Array.isArray(docs)) throw new Error(`${file}: empty`);
    objects.set(
      file,
      docs.map((d) => {
        if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0]?.message}`);
        return d.toJS() as unknown;
      }),
    );
  }
  return { kustomization: parse(read(`${dir}/kustomization.yaml`)), folder, objects };
}

function loadContext(): Context {
  const compose = z
    .object({
      services: z.record(
        z.string(),
        z.object({
          command: z.array(z.string()).optional(),
          environment: z.record(z.string(), z.string()).optional(),
        }),
      ),
    })
    .parse(parse(read('docker-compose.yml'), { merge: true }));
  const services = Object.fromEntries(
    Object.keys(SERVICES).map((s) => {
      const c = compose.services[s];
      if (!c?.command || !c.environment) throw new Error(`docker-compose.yml: no command or environment for ${s}`);
      return [s, { command: c.command, environment: c.environment }];
    }),
  );
  // The keys of the Env object each main parses process.env with (two-space indent: top level).
  const reads = Object.fromEntries(
    Object.entries(SERVICES).map(([s, files]) => [
      s,
      new Set(files.flatMap((f) => [...read(f).matchAll(/^ {2}([A-Z][A-Z0-9_]*): /gm)].map((m) => m[1] as string))),
    ]),
  ) as Record<ServiceName, Set<string>>;
  const envoy = read('envoy/envoy.yaml');
  const envoyUpstreams = [...envoy.matchAll(/socket_address: \{ address: ([a-z-]+), port_value: (\d+) \}/g)].map(
    (m) => `${m[1]}:${m[2]}`,
  );
  const envoyFiles = [...envoy.matchAll(/(?:filename|proto_descriptor): (\/\S+)/g)].map((m) => m[1] as string);
  const envoyTag = /^FROM envoyproxy\/envoy:(\S+)/m.exec(read('Dockerfile'))?.[1];
  if (!envoyTag) throw new Error('Dockerfile: no envoyproxy/envoy stage');
  return { compose: services, reads, envoyUpstreams, envoyFiles, envoyTag };
}

/** Refuses the manifests (throws, naming every problem) unless all of them hold. */
function validateManifests(m: Manifests, ctx: Context): void {
  const problems: string[] = [];
  const k = Kustomization.safeParse(m.kustomization);
  if (!k.success) throw new Error(`kustomization.yaml: ${k.error.message}`);
  problems.push(...checkKustomization(k.data, m.folder));

  const all: K8sObject[] = [];
  for (const [file, objects] of m.objects) {
    for (const obj of objects) {
      const o = obj as K8sObject;
      const where = `${file}: ${o.kind}/${o.metadata?.name}`;
      const Model = MODELS[`${o.apiVersion}/${o.kind}`];
      if (!Model) {
        problems.push(`${where}: no schema for ${o.apiVersion} ${o.kind}`);
        continue;
      }
      try {
        new Model(obj as never).validate();
        all.push(o);
      } catch (err) {
        problems.push(`${where}: ${(err as Error).message}`);
      }
    }
  }
  if (problems.length === 0) problems.push(...crossCheck(all, k.data, ctx));
  if (problems.length > 0) throw new Error(problems.join('\n'));
}

function checkKustomization(k: Kustomization, folder: string[]): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const r of k.resources) {
    if (seen.has(r)) problems.push(`kustomization.yaml: ${r} listed twice`);
    seen.add(r);
    if (!existsSync(join(root, dir, r))) problems.push(`kustomization.yaml: ${r} does not exist`);
  }
  for (const f of folder) if (!seen.has(f)) problems.push(`kustomization.yaml: ${f} is not in resources`);
  for (const g of k.configMapGenerator)
    for (const f of g.files) {
      const path = f.split('=')[1] as string;
      if (!existsSync(join(root, dir, path))) problems.push(`configMapGenerator ${g.name}: ${path} does not exist`);
    }
  return problems;
}

const matches = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean =>
  !!selector && Object.keys(selector).length > 0 && Object.entries(selector).every(([key, v]) => labels?.[key] === v);

/** The references between the objects, and to the rest of the repo. */
function crossCheck(all: K8sObject[], k: Kustomization, ctx: Context): string[] {
  const problems: string[] = [];
  const of = <T>(kind: string): T[] => all.filter((o) => o.kind === kind) as T[];
  const deployments = of<IDeployment & K8sObject>('Deployment');
  const services = of<IService & K8sObject>('Service');
  const configMaps = new Map(of<IConfigMap & K8sObject>('ConfigMap').map((c) => [c.metadata.name, c.data ?? {}]));
  for (const g of k.configMapGenerator)
    configMaps.set(g.name, Object.fromEntries(g.files.map((f) => [f.split('=')[0] as string, ''])));
  const secrets = new Map(
    of<ISecret & K8sObject>('Secret').map((s) => [s.metadata.name, { ...s.data, ...s.stringData }]),
  );
  const slices = of<IEndpointSlice & K8sObject>('EndpointSlice');
  const pods = (d: IDeployment): Record<string, string> | undefined => d.spec?.template.metadata?.labels;
  const containersOf = (d: IDeployment): IContainer[] => [
    ...(d.spec?.template.spec?.containers ?? []),
    ...(d.spec?.template.spec?.initContainers ?? []),
  ];

  for (const d of deployments) {
    const name = `Deployment/${d.metadata.name}`;
    if (!matches(d.spec?.selector.matchLabels, pods(d))) problems.push(`${name}: selector does not match its pods`);
    const volumes = new Map((d.spec?.template.spec?.volumes ?? []).map((v) => [v.name, v]));
    for (const v of volumes.values())
      if (v.configMap && !configMaps.has(v.configMap.name ?? ''))
        problems.push(`${name}: volume ${v.name} names no ConfigMap ${v.configMap.name}`);
    for (const c of containersOf(d)) {
      const where = `${name} container ${c.name}`;
      const ports = c.ports ?? [];
      const probes: [string, IProbe | undefined][] = [
        ['startupProbe', c.startupProbe],
        ['readinessProbe', c.readinessProbe],
        ['livenessProbe', c.livenessProbe],
      ];
      for (const [kind, p] of probes) {
        const port = p?.grpc?.port ?? p?.tcpSocket?.port ?? p?.httpGet?.port;
        if (port === undefined) continue;
        if (!ports.some((cp) => cp.containerPort === port || cp.name === port))
          problems.push(`${where}: ${kind} port ${port} is not a container port`);
      }
      for (const e of c.envFrom ?? []) {
        if (e.configMapRef && !configMaps.has(e.configMapRef.name ?? ''))
          problems.push(`${where}: envFrom names no ConfigMap ${e.configMapRef.name}`);
        if (e.secretRef && !secrets.has(e.secretRef.name ?? ''))
          problems.push(`${where}: envFrom names no Secret ${e.secretRef.name}`);
      }
      for (const e of c.env ?? []) {
        const ref = e.valueFrom?.secretKeyRef;
        if (ref && !(ref.key in (secrets.get(ref.name ?? '') ?? {})))
          problems.push(`${where}: env ${e.name} names no Secret key ${ref.name}/${ref.key}`);
      }
      for (const vm of c.volumeMounts ?? [])
        if (!volumes.has(vm.name)) problems.push(`${where}: mounts no volume ${vm.name}`);
    }
  }

  for (const s of services) {
    const name = `Service/${s.metadata.name}`;
    const selector = s.spec?.selector;
    if (!selector) {
      const slice = slices.find((e) => e.metadata.labels?.['kubernetes.io/service-name'] === s.metadata.name);
      if (!slice) problems.push(`${name}: no selector and no EndpointSlice`);
      for (const p of s.spec?.ports ?? [])
        if (!slice?.ports?.some((sp) => sp.name === p.name && sp.port === p.targetPort))
          problems.push(`${name}: port ${p.name} is not in its EndpointSlice`);
      continue;
    }
    const target = deployments.find((d) => matches(selector, pods(d)));
    if (!target) {
      problems.push(`${name}: selector matches no Deployment's pods`);
      continue;
    }
    const ports = containersOf(target).flatMap((c) => c.ports ?? []);
    for (const p of s.spec?.ports ?? []) {
      const t = p.targetPort ?? p.port;
      if (!ports.some((cp) => cp.containerPort === t || cp.name === t))
        problems.push(`${name}: targetPort ${t} is not a container port of ${target.metadata.name}`);
    }
  }
  for (const e of slices) {
    const owner = services.find((s) => s.metadata.name === e.metadata.labels?.['kubernetes.io/service-name']);
    if (!owner || owner.spec?.selector)
      problems.push(`EndpointSlice/${e.metadata.name}: names no selectorless Service`);
  }
  for (const p of of<IPodDisruptionBudget & K8sObject>('PodDisruptionBudget'))
    if (!deployments.some((d) => matches(p.spec?.selector?.matchLabels, pods(d))))
      problems.push(`PodDisruptionBudget/${p.metadata.name}: selector matches no Deployment's pods`);
  for (const h of of<IHorizontalPodAutoscaler & K8sObject>('HorizontalPodAutoscaler')) {
    const ref = h.spec?.scaleTargetRef;
    const d = deployments.find((x) => ref?.kind === 'Deployment' && x.metadata.name === ref.name);
    if (!d || ref?.apiVersion !== 'apps/v1') {
      problems.push(`HorizontalPodAutoscaler/${h.metadata.name}: targets no Deployment (${ref?.kind}/${ref?.name})`);
      continue;
    }
    // Utilization is a share of the request: a container without a CPU request is not scaled.
    if (!d.spec?.template.spec?.containers.every((c) => c.resources?.requests?.['cpu']))
      problems.push(
        `HorizontalPodAutoscaler/${h.metadata.name}: ${d.metadata.name} has a container without a CPU request`,
      );
  }
  for (const [name, data] of secrets)
    for (const [key, v] of Object.entries(data))
      if (!String(v).includes('REPLACE_ME')) problems.push(`Secret/${name}: ${key} is not a REPLACE_ME placeholder`);

  problems.push(...checkServices(deployments, configMaps, secrets, ctx));
  problems.push(...checkEnvoy(deployments, services, k, ctx));
  return problems;
}

/** A variable compose sets whose alternative may be set instead (the JWKS from a file or a URL). */
const ALTERNATIVE: Record<string, string> = { JWT_JWKS_FILE: 'JWT_JWKS_URL' };

/** Each Node service against docker-compose.yml and the env its main reads. */
function checkServices(
  deployments: (IDeployment & K8sObject)[],
  configMaps: Map<string, Record<string, string>>,
  secrets: Map<string, Record<string, string>>,
  ctx: Context,
): string[] {
  const problems: string[] = [];
  for (const s of Object.keys(SERVICES) as ServiceName[]) {
    const c = deployments.find((d) => d.metadata.name === s)?.spec?.template.spec?.containers[0];
    if (!c) {
      problems.push(`${s}: no Deployment`);
      continue;
    }
    const compose = ctx.compose[s];
    if (JSON.stringify(c.command) !== JSON.stringify(compose?.command))
      problems.push(`${s}: command ${JSON.stringify(c.command)} is not docker-compose.yml's`);
    const env = new Map<string, string>();
    for (const e of c.envFrom ?? []) {
      const data = e.configMapRef ? configMaps.get(e.configMapRef.name ?? '') : secrets.get(e.secretRef?.name ?? '');
      for (const [key, v] of Object.entries(data ?? {})) env.set(key, v);
    }
    for (const e of c.env ?? []) env.set(e.name, e.value ?? '(from a reference)');
    const reads = ctx.reads[s];
    for (const name of Object.keys(compose?.environment ?? {}))
      if (reads.has(name) && !env.has(name) && !env.has(ALTERNATIVE[name] ?? name))
        problems.push(`${s}: reads ${name} (set in docker-compose.yml), not set`);
    for (const name of env.keys()) if (!reads.has(name)) problems.push(`${s}: sets ${name}, which it does not read`);
    for (const [variable, portName] of [
      ['GRPC_PORT', 'grpc'],
      ['METRICS_PORT', 'metrics'],
    ] as const) {
      const port = c.ports?.find((p) => p.name === portName)?.containerPort;
      if (port === undefined || env.get(variable) !== String(port))
        problems.push(`${s}: ${variable} ${env.get(variable)} is not its ${portName} container port ${port}`);
    }
  }
  return problems;
}

/** Envoy: the Dockerfile's tag, every upstream a Service port, every file it opens mounted. */
function checkEnvoy(
  deployments: (IDeployment & K8sObject)[],
  services: (IService & K8sObject)[],
  k: Kustomization,
  ctx: Context,
): string[] {
  const problems: string[] = [];
  const pod = deployments.find((d) => d.metadata.name === 'envoy')?.spec?.template.spec;
  const envoy = pod?.containers.find((c) => c.name === 'envoy');
  if (!pod || !envoy) return ['Deployment/envoy: none, or no container envoy'];
  if (envoy.image !== `envoyproxy/envoy:${ctx.envoyTag}`)
    problems.push(`envoy: image ${envoy.image} is not the Dockerfile's envoyproxy/envoy:${ctx.envoyTag}`);
  for (const upstream of ctx.envoyUpstreams) {
    const [host, port] = upstream.split(':');
    if (!services.some((s) => s.metadata.name === host && s.spec?.ports?.some((p) => String(p.port) === port)))
      problems.push(`envoy.yaml: upstream ${upstream} is no Service port`);
  }
  const generated = new Map(k.configMapGenerator.map((g) => [g.name, g.files.map((f) => f.split('=')[0])]));
  const mounts = (envoy.volumeMounts ?? []).map((vm) => {
    const volume = pod.volumes?.find((v) => v.name === vm.name);
    const keys = generated.get(volume?.configMap?.name ?? '');
    return { ...vm, known: !volume?.configMap || (vm.subPath !== undefined && !!keys?.includes(vm.subPath)) };
  });
  for (const file of [...ctx.envoyFiles, '/etc/envoy/envoy.yaml']) {
    const m = mounts.find((vm) => file === vm.mountPath || file.startsWith(`${vm.mountPath}/`));
    if (!m?.known) problems.push(`envoy: ${file} (envoy.yaml) is not mounted from a generated key or a volume`);
  }
  // The JWKS is no file of the ConfigMap: an init container writes it (compose's one-shot jwks).
  const jwks = ctx.envoyFiles.find((f) => f.endsWith('.json'));
  if (!pod.initContainers?.some((c) => jwks && c.command?.includes(jwks)))
    problems.push(`envoy: no init container writes ${jwks}`);
  return problems;
}

// ---------------------------------------------------------------------------------------------

const ctx = loadContext();
const loaded = loadManifests();
/** A copy of the manifests as in the repo, to break. */
const fresh = (): Manifests => structuredClone(loaded);
/** The first object of `kind` named `name`, in a copy to break. */
function find<T>(m: Manifests, kind: string, name: string): T {
  for (const objects of m.objects.values())
    for (const o of objects)
      if ((o as K8sObject).kind === kind && (o as K8sObject).metadata.name === name) return o as T;
  throw new Error(`no ${kind}/${name}`);
}

describe('deploy/k8s', () => {
  it('every object passes the Kubernetes schema and every reference holds', () => {
    const m = fresh();
    const kinds = [...m.objects.values()].flat().map((o) => (o as K8sObject).kind);
    for (const kind of Object.keys(MODELS).map((key) => key.split('/').pop()))
      expect(kinds, `a ${kind} is checked`).toContain(kind);
    expect(kinds.filter((x) => x === 'Deployment')).toHaveLength(5);
    // What the checks read from the repo is there to compare with (an empty read would pass anything).
    expect(ctx.envoyUpstreams).toEqual(['grab-svc:50051', 'account-svc:50052', 'gift-svc:50053', 'gateway:50054']);
    expect([...ctx.envoyFiles].sort()).toEqual([
      '/etc/envoy/certs/tls.crt',
      '/etc/envoy/certs/tls.key',
      '/etc/envoy/jwks/jwks.json',
      '/etc/envoy/redpacket.pb',
    ]);
    expect(ctx.reads['grab-svc']).toContain('REDIS_WAIT_REPLICAS');
    expect(ctx.reads['grab-svc']).toContain('AMQP_URL');
    expect(ctx.reads.gateway).not.toContain('MYSQL_URL');
    expect(() => validateManifests(m, ctx)).not.toThrow();
  });

  it('grab-svc and gateway scale on CPU, one pod a step, around the 40-70% band', () => {
    const m = fresh();
    for (const name of ['grab-svc', 'gateway']) {
      const h = find<IHorizontalPodAutoscaler>(m, 'HorizontalPodAutoscaler', name);
      expect(h.spec?.metrics).toEqual([
        { type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 64 } } },
      ]);
      const b = h.spec?.behavior;
      for (const rules of [b?.scaleUp, b?.scaleDown]) {
        expect(rules?.policies?.length).toBeGreaterThan(0);
        for (const p of rules?.policies ?? []) expect(p).toMatchObject({ type: 'Pods', value: 1 });
      }
      expect(b?.scaleDown?.stabilizationWindowSeconds).toBeGreaterThanOrEqual(300);
      expect(h.spec?.minReplicas).toBeGreaterThanOrEqual(2);
    }
    // README's band: the HPA's default 10% tolerance puts scale-out at 64 x 1.1 = 70.4%; scale-in
    // (ceil(n x u / 64) < n) at 64 (n - 1) / n: 32% at 2 pods, 42.7% at 3, 48% at 4.
    const scaleInBelow = (n: number): number => (64 * (n - 1)) / n;
    expect(64 * 1.1).toBeCloseTo(70.4);
    expect([2, 3, 4].map((n) => Math.round(scaleInBelow(n) * 10) / 10)).toEqual([32, 42.7, 48]);
  });

  it('refuses a Deployment with replicas: "two"', () => {
    const m = fresh();
    const d = find<{ spec: { replicas: unknown } }>(m, 'Deployment', 'grab-svc');
    d.spec.replicas = 'two';
    expect(() => validateManifests(m, ctx)).toThrow(/Deployment\/grab-svc: .*spec\/replicas must be integer/);
  });

  it('refuses a probe on a port string that is not a named port', () => {
    const grpc = fresh();
    const g = find<IDeployment>(grpc, 'Deployment', 'gift-svc').spec?.template.spec?.containers[0];
    (g!.readinessProbe!.grpc as { port: unknown }).port = 'grpc';
    expect(() => validateManifests(grpc, ctx)).toThrow(/readinessProbe\/grpc\/port must be integer/);

    const tcp = fresh();
    const e = find<IDeployment>(tcp, 'Deployment', 'envoy').spec?.template.spec?.containers[0];
    e!.livenessProbe!.tcpSocket!.port = 'htp';
    expect(() => validateManifests(tcp, ctx)).toThrow(
      /container envoy: livenessProbe port htp is not a container port/,
    );

    const number = fresh();
    const a = find<IDeployment>(number, 'Deployment', 'account-svc').spec?.template.spec?.containers[0];
    a!.livenessProbe!.grpc!.port = 50051;
    expect(() => validateManifests(number, ctx)).toThrow(
      /account-svc: livenessProbe port 50051 is not a container port/,
    );
  });

  it('refuses an HPA missing scaleTargetRef, or targeting no Deployment', () => {
    const missing = fresh();
    delete find<{ spec: { scaleTargetRef?: unknown } }>(missing, 'HorizontalPodAutoscaler', 'gateway').spec
      .scaleTargetRef;
    expect(() => validateManifests(missing, ctx)).toThrow(
      /HorizontalPodAutoscaler\/gateway: data\/spec must have required property scaleTargetRef/,
    );

    const wrong = fresh();
    find<IHorizontalPodAutoscaler>(wrong, 'HorizontalPodAutoscaler', 'grab-svc').spec!.scaleTargetRef.name = 'grab';
    expect(() => validateManifests(wrong, ctx)).toThrow(/HorizontalPodAutoscaler\/grab-svc: targets no Deployment/);
  });

  it('refuses broken references: a selector, an env name, a secret, an upstream, the kustomization', () => {
    const cases: [string, (m: Manifests) => void, RegExp][] = [
      [
        'Service selector',
        (m) => (find<IService>(m, 'Service', 'gateway').spec!.selector = { 'app.kubernetes.io/name': 'gateway2' }),
        /Service\/gateway: selector matches no Deployment's pods/,
      ],
      [
        'PDB selector',
        (m) =>
          (find<IPodDisruptionBudget>(m, 'PodDisruptionBudget', 'envoy').spec!.selector = {
            matchLabels: { app: 'envoy' },
          }),
        /PodDisruptionBudget\/envoy: selector matches no Deployment's pods/,
      ],
      [
        'an env name docker-compose sets and the service reads',
        (m) => delete find<IConfigMap>(m, 'ConfigMap', 'gift-svc-config').data!['WORKERS'],
        /gift-svc: reads WORKERS \(set in docker-compose.yml\), not set/,
      ],
      [
        'a misspelt env name',
        (m) => (find<IConfigMap>(m, 'ConfigMap', 'grab-svc-config').data!['REDIS_WAIT_REPLICA'] = '1'),
        /grab-svc: sets REDIS_WAIT_REPLICA, which it does not read/,
      ],
      [
        'GRPC_PORT apart from the container port',
        (m) => (find<IConfigMap>(m, 'ConfigMap', 'account-svc-config').data!['GRPC_PORT'] = '50099'),
        /account-svc: GRPC_PORT 50099 is not its grpc container port 50052/,
      ],
      [
        'a real-looking secret',
        (m) => (find<ISecret>(m, 'Secret', 'mesh-secrets').stringData!['JWT_SECRET'] = 'hunter2hunter2hunter2'),
        /Secret\/mesh-secrets: JWT_SECRET is not a REPLACE_ME placeholder/,
      ],
      [
        'a Service Envoy sends to',
        (m) => (find<IService>(m, 'Service', 'grab-svc').metadata!.name = 'grab'),
        /envoy.yaml: upstream grab-svc:50051 is no Service port/,
      ],
      [
        'an EndpointSlice port',
        (m) => (find<IEndpointSlice>(m, 'EndpointSlice', 'mysql-1').ports![0]!.port = 3307),
        /Service\/mysql: port mysql is not in its EndpointSlice/,
      ],
      [
        'the JWKS the init container writes',
        (m) =>
          (find<IDeployment>(m, 'Deployment', 'envoy').spec!.template.spec!.initContainers![0]!.command![2] =
            '/var/run/jwks.json'),
        /envoy: no init container writes \/etc\/envoy\/jwks\/jwks.json/,
      ],
      [
        'a resource listed twice',
        (m) => (m.kustomization as Kustomization).resources.push('envoy.yaml'),
        /envoy.yaml listed twice/,
      ],
      [
        'a file left out',
        (m) =>
          ((m.kustomization as Kustomization).resources = (m.kustomization as Kustomization).resources.filter(
            (r) => r !== 'external.yaml',
          )),
        /external.yaml is not in resources/,
      ],
      [
        'a generator file',
        (m) => ((m.kustomization as Kustomization).configMapGenerator[0]!.files[1] = 'redpacket.pb=../../redpacket.pb'),
        /configMapGenerator envoy-config: ..\/..\/redpacket.pb does not exist/,
      ],
    ];
    for (const [what, breakIt, refused] of cases) {
      const m = fresh();
      breakIt(m);
      expect(() => validateManifests(m, ctx), what).toThrow(refused);
    }
  });
});

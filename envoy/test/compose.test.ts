/**
 * docker-compose.yml checked by Docker Compose's own parser (Debian's docker-compose, `config`
 * needs no engine), then against the Dockerfile and envoy.yaml it has to agree with.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import { parse } from 'yaml';

type Json = Record<string, unknown>;
const root = fileURLToPath(new URL('../..', import.meta.url));
const composeText = readFileSync(join(root, 'docker-compose.yml'), 'utf8');
const work = mkdtempSync(join(tmpdir(), 'compose-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** `docker-compose config` on a compose file (with extra variables); the resolved YAML, or throws with its error. */
function composeConfig(file: string, vars: Record<string, string> = {}): string {
  try {
    return execFileSync('docker-compose', ['-f', file, '--project-directory', root, 'config'], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...vars },
    });
  } catch (err) {
    const e = err as { code?: string; stderr?: string };
    if (e.code === 'ENOENT') {
      throw new Error('docker-compose not found: apt-get install -y docker-compose (or run scripts/setup.sh)', {
        cause: err,
      });
    }
    throw new Error(`docker-compose config refused ${file}: ${e.stderr ?? String(err)}`, { cause: err });
  }
}

function withCopy(edit: (doc: Json) => void): string {
  const doc = parse(composeText, { merge: true }) as Json;
  edit(doc);
  const file = join(work, `compose-${Math.random().toString(36).slice(2)}.yml`);
  writeFileSync(file, JSON.stringify(doc));
  return file;
}

describe('docker-compose.yml', () => {
  const resolved = parse(composeConfig(join(root, 'docker-compose.yml'))) as Json;
  const services = resolved['services'] as Record<string, Json>;
  const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');

  test('is accepted by docker-compose config, and a copy with a misspelt key is not', () => {
    expect(Object.keys(services).length).toBeGreaterThanOrEqual(10);
    const bad = withCopy((doc) => {
      const redis = (doc['services'] as Record<string, Json>)['redis'] as Json;
      redis['healthchek'] = redis['healthcheck'];
      delete redis['healthcheck'];
    });
    expect(() => composeConfig(bad)).toThrow(/healthchek/);
    const badCondition = withCopy((doc) => {
      const grab = (doc['services'] as Record<string, Json>)['grab-svc'] as Json;
      grab['depends_on'] = { redis: { condition: 'service_ready' } };
    });
    expect(() => composeConfig(badCondition)).toThrow(/service_ready|condition/);
  });

  test('third-party images are official and pinned; everything else comes from one multi-stage Dockerfile', () => {
    const froms = [...dockerfile.matchAll(/^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/gim)].map((m) => ({
      image: m[1],
      stage: m[2],
    }));
    expect(froms.length).toBeGreaterThanOrEqual(3);
    const pinned = (image: string): boolean => /:(v?\d+\.\d+\.\d+)(-[a-z0-9.-]+)?$/.test(image);
    for (const f of froms) expect(pinned(String(f.image)), String(f.image)).toBe(true);
    expect(froms.map((f) => f.image)).toContainEqual(expect.stringMatching(/^envoyproxy\/envoy:/));
    const stages = new Set(froms.map((f) => f.stage));
    for (const [name, s] of Object.entries(services)) {
      if (s['build']) {
        const build = s['build'] as Json;
        expect(String(build['dockerfile']), name).toMatch(/(^|\/)Dockerfile$/);
        expect(stages.has(String(build['target'])), `${name} target`).toBe(true);
      } else {
        expect(pinned(String(s['image'])), `${name}: ${String(s['image'])}`).toBe(true);
      }
    }
    for (const infra of ['redis', 'mysql', 'rabbitmq'])
      expect(services[infra]?.['image']).toMatch(new RegExp(`^${infra}:`));
  });

  test('long-running services have health checks; every dependency waits on a condition', () => {
    for (const [name, s] of Object.entries(services)) {
      const oneShot = s['restart'] === 'no';
      if (!oneShot) expect(s['healthcheck'], name).toBeDefined();
      for (const [dep, cond] of Object.entries((s['depends_on'] as Record<string, Json> | undefined) ?? {})) {
        const depOneShot = services[dep]?.['restart'] === 'no';
        expect((cond as Json)['condition'], `${name} -> ${dep}`).toBe(
          depOneShot ? 'service_completed_successfully' : 'service_healthy',
        );
      }
    }
    expect(services['migrate']?.['restart']).toBe('no');
  });

  test('no well-known key: verifiers mount the JWKS only, the private key reaches account-svc and the smoke test', () => {
    expect(composeText).not.toMatch(/JWT_SECRET|REDPACKET_DEV|dev-secret/);
    for (const name of ['grab-svc', 'gift-svc', 'account-svc']) {
      expect((services[name]?.['environment'] as Json)['JWT_JWKS_FILE'], name).toBe('/keys/jwks.json');
    }
    const mountsPrivate = Object.entries(services)
      .filter(([, s]) => ((s['volumes'] as string[] | undefined) ?? []).some((v) => v.includes('private.pem')))
      .map(([name]) => name)
      .sort();
    expect(mountsPrivate).toEqual(['account-svc', 'smoke']);
    expect((services['account-svc']?.['environment'] as Json)['JWT_PRIVATE_KEY_FILE']).toBe('/keys/private.pem');
    const envoyMounts = (services['envoy']?.['volumes'] as string[]).map((v) => v.split(':')[1]);
    expect(envoyMounts).toContain('/etc/envoy/jwks/jwks.json');
  });

  test('grab-svc, gift-svc and gateway run replicas', () => {
    for (const name of ['grab-svc', 'gift-svc', 'gateway']) {
      expect(Number((services[name]?.['deploy'] as Json | undefined)?.['replicas']), name).toBeGreaterThanOrEqual(2);
    }
  });

  test('prometheus and grafana run from their official images with their config files mounted read-only', () => {
    expect(services['prometheus']?.['image']).toMatch(/^prom\/prometheus:/);
    expect(services['grafana']?.['image']).toMatch(/^grafana\/grafana:/);
    /** host path -> container path of a service's bind mounts (named volumes have no '/' in front). */
    const binds = (name: string): Map<string, string> =>
      new Map(
        ((services[name]?.['volumes'] as string[] | undefined) ?? [])
          .map((v) => v.split(':'))
          .filter(([host]) => host?.startsWith('/'))
          .map(([host, container, mode]) => {
            expect(mode, `${name}: ${String(host)}`).toBe('ro');
            return [relative(root, String(host)), String(container)];
          }),
      );
    const prom = binds('prometheus');
    expect(prom.get('ops/prometheus/prometheus.yml')).toBe('/etc/prometheus/prometheus.yml');
    expect(services['prometheus']?.['command']).toContain('--config.file=/etc/prometheus/prometheus.yml');
    const grafana = binds('grafana');
    expect(grafana.get('ops/grafana/provisioning')).toBe('/etc/grafana/provisioning');
    expect(grafana.get('ops/grafana/dashboards')).toBe('/var/lib/grafana/dashboards');
    for (const host of [...prom.keys(), ...grafana.keys()]) expect(existsSync(join(root, host)), host).toBe(true);
    for (const f of ['datasources/prometheus.yml', 'dashboards/redpacket.yml'])
      expect(existsSync(join(root, 'ops/grafana/provisioning', f)), f).toBe(true);
    expect(existsSync(join(root, 'ops/grafana/dashboards/redpacket.json'))).toBe(true);
    // the data lives in named volumes, declared at the top level
    const named = Object.keys((resolved['volumes'] as Json | undefined) ?? {});
    expect(named).toEqual(expect.arrayContaining(['prometheus', 'grafana']));
    const published = (name: string) => (services[name]?.['ports'] as Json[]).map((p) => String(p['published']));
    expect(published('grafana')).toContain('3000');
    expect(published('prometheus')).toContain('9090');
  });

  test("prometheus.yml scrapes every service's replicas on the METRICS_PORT it is given here", () => {
    const prom = parse(readFileSync(join(root, 'ops/prometheus/prometheus.yml'), 'utf8')) as {
      scrape_configs: { job_name: string; dns_sd_configs?: { names: string[]; port: number }[] }[];
    };
    for (const name of ['grab-svc', 'account-svc', 'gift-svc', 'gateway']) {
      const port = (services[name]?.['environment'] as Json)['METRICS_PORT'];
      expect(port, `${name} METRICS_PORT`).toMatch(/^\d+$/);
      const job = prom.scrape_configs.find((j) => j.job_name === name);
      expect(job?.dns_sd_configs, name).toEqual([expect.objectContaining({ names: [name], port: Number(port) })]);
    }
  });

  test("envoy.yaml's upstreams are the compose services on their GRPC_PORT, and its listener is published", () => {
    const envoy = parse(readFileSync(join(root, 'envoy/envoy.yaml'), 'utf8')) as Json;
    const clusters = (envoy['static_resources'] as Json)['clusters'] as Json[];
    for (const c of clusters) {
      const ep = (
        (((c['load_assignment'] as Json)['endpoints'] as Json[])[0] as Json)['lb_endpoints'] as Json[]
      )[0] as Json;
      const sock = ((ep['endpoint'] as Json)['address'] as Json)['socket_address'] as Json;
      const svc = services[String(sock['address'])];
      expect(svc, String(sock['address'])).toBeDefined();
      expect(String((svc?.['environment'] as Json)['GRPC_PORT'])).toBe(String(sock['port_value']));
    }
    const ports = new Map(
      ((envoy['static_resources'] as Json)['listeners'] as Json[]).map((l) => [
        String(l['name']),
        Number(((l['address'] as Json)['socket_address'] as Json)['port_value']),
      ]),
    );
    const published = new Map(
      (services['envoy']?.['ports'] as Json[]).map((p) => [Number(p['target']), Number(p['published'])]),
    );
    // The TLS listener on 8443 and the plain one (a redirect to it) on 8080, on the host's same ports.
    expect(ports.get('https')).toBe(8443);
    expect(published.get(8443)).toBe(8443);
    expect(published.get(Number(ports.get('http')))).toBe(8080);
    expect([...published.keys()].sort()).toEqual([...ports.values()].sort());
  });

  test("envoy gets the operator's certificates (./certs unless EDGE_CERTS_DIR) and config read-only", () => {
    const binds = ((services['envoy']?.['volumes'] as string[] | undefined) ?? []).map((v) => v.split(':'));
    expect(binds).toContainEqual([join(root, 'certs'), '/etc/envoy/certs', 'ro']);
    expect(binds).toContainEqual([join(root, 'envoy/envoy.yaml'), '/etc/envoy/envoy.yaml', 'ro']);
    // the smoke test trusts that certificate for the name envoy
    const smoke = services['smoke'] as Json;
    expect(((smoke['volumes'] as string[]) ?? []).map((v) => v.split(':'))).toContainEqual([
      join(root, 'certs'),
      '/certs',
      'ro',
    ]);
    expect((smoke['environment'] as Json)['NODE_EXTRA_CA_CERTS']).toBe('/certs/tls.crt');
    expect((smoke['environment'] as Json)['ENVOY_URL']).toBe('https://envoy:8443');
    const custom = parse(
      composeConfig(join(root, 'docker-compose.yml'), { EDGE_CERTS_DIR: '/srv/edge-certs' }),
    ) as Json;
    const envoyVolumes = ((custom['services'] as Record<string, Json>)['envoy']?.['volumes'] as string[]) ?? [];
    expect(envoyVolumes).toContain('/srv/edge-certs:/etc/envoy/certs:ro');
  });
});

/**
 * Envoy's own API as a @bufbuild/protobuf registry, built with protoc from the protos that ship
 * in @grpc/grpc-js-xds (deps/), with a corrected validate.proto first on the include path.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { createFileRegistry, fromBinary, type FileRegistry } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';

const require = createRequire(import.meta.url);
export const xdsDeps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
export const includeDirs = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(xdsDeps, d));

/**
 * protoc-gen-validate rules that Envoy's protos use but the validate.proto shipped beside them
 * lacks, with their field numbers in upstream protoc-gen-validate.
 */
const MISSING_VALIDATE_FIELDS: Record<string, number> = {
  ...Object.fromEntries(
    ['Float', 'Double', 'Int32', 'Int64', 'UInt32', 'UInt64', 'SInt32', 'SInt64']
      .concat(['Fixed32', 'Fixed64', 'SFixed32', 'SFixed64'])
      .map((t) => [`${t}Rules`, 8]),
  ),
  StringRules: 26,
  BytesRules: 16,
  RepeatedRules: 5,
  MapRules: 6,
};

/** The shipped validate.proto with `optional bool ignore_empty` added where it is missing. */
export function correctedValidateProto(): string {
  let text = readFileSync(join(xdsDeps, 'protoc-gen-validate/validate/validate.proto'), 'utf8');
  for (const [message, field] of Object.entries(MISSING_VALIDATE_FIELDS)) {
    const start = text.indexOf(`message ${message} {`);
    if (start < 0) throw new Error(`validate.proto has no message ${message}`);
    let depth = 0;
    let end = start;
    for (let i = text.indexOf('{', start); i < text.length; i++) {
      if (text[i] === '{') depth++;
      else if (text[i] === '}' && --depth === 0) {
        end = i;
        break;
      }
    }
    const body = text.slice(start, end);
    if (/\bignore_empty\b/.test(body)) continue;
    text = `${text.slice(0, end)}    optional bool ignore_empty = ${field};\n${text.slice(end)}`;
  }
  return text;
}

/** Envoy API files whose imports are all present (a few need protos grpc-js-xds does not ship). */
function compilableFiles(): string[] {
  const roots = includeDirs;
  const memo = new Map<string, boolean>();
  const locate = (p: string): string | undefined => roots.map((r) => join(r, p)).find((f) => existsSync(f));
  const ok = (p: string): boolean => {
    if (p.startsWith('google/protobuf/')) return true;
    const known = memo.get(p);
    if (known !== undefined) return known;
    const file = locate(p);
    memo.set(p, file !== undefined);
    if (!file) return false;
    for (const m of readFileSync(file, 'utf8').matchAll(/^import (?:public )?"([^"]+)";/gm)) {
      if (!ok(m[1] as string)) {
        memo.set(p, false);
        return false;
      }
    }
    return true;
  };
  const envoyRoot = join(xdsDeps, 'envoy-api');
  const out = execFileSync('find', [join(envoyRoot, 'envoy'), '-name', '*.proto'], { encoding: 'utf8' });
  return out
    .split('\n')
    .filter(Boolean)
    .map((f) => relative(envoyRoot, f))
    .filter(ok)
    .sort();
}

export interface EnvoyApi {
  registry: FileRegistry;
  /** Number of .proto files compiled. */
  files: number;
}

/** Runs protoc over Envoy's API (a few seconds) and loads the result. */
export function buildEnvoyApi(): EnvoyApi {
  const work = mkdtempSync(join(tmpdir(), 'envoy-api-'));
  try {
    mkdirSync(join(work, 'fix/validate'), { recursive: true });
    writeFileSync(join(work, 'fix/validate/validate.proto'), correctedValidateProto());
    const files = compilableFiles();
    const out = join(work, 'envoy.pb');
    const args = ['-I', join(work, 'fix'), ...includeDirs.flatMap((d) => ['-I', d])];
    args.push('--include_imports', `--descriptor_set_out=${out}`, ...files);
    try {
      execFileSync('protoc', args, { cwd: join(xdsDeps, 'envoy-api'), stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (err) {
      const e = err as { code?: string; stderr?: Buffer };
      if (e.code === 'ENOENT')
        throw new Error('protoc not found: apt-get install -y protobuf-compiler', { cause: err });
      throw new Error(`protoc failed on Envoy's API:\n${String(e.stderr ?? err)}`, { cause: err });
    }
    const set = fromBinary(FileDescriptorSetSchema, readFileSync(out));
    return { registry: createFileRegistry(set), files: files.length };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

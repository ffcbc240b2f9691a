/**
 * mTLS inside the mesh: the GRPC_TLS_* variables (all three or none), reading their files once at
 * start-up, and the grpc-js credentials a server and a client build from them.
 */
import { readFileSync } from 'node:fs';
import { credentials, ServerCredentials, type ChannelCredentials } from '@grpc/grpc-js';

/** The three variables, in the order a refusal names the missing ones. */
export const TLS_ENV_VARS = ['GRPC_TLS_CERT_FILE', 'GRPC_TLS_KEY_FILE', 'GRPC_TLS_CA_FILE'] as const;

/** Where this process's certificate, its key and the mesh's CA are (PEM files). */
export interface TlsFiles {
  certFile: string;
  keyFile: string;
  caFile: string;
}

/**
 * The PEM contents: this process's certificate chain and key, and the CA its peers' certificates
 * must be signed by. The same shape as @redpacket/client's `tls` option.
 */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
}

type TlsVar = (typeof TLS_ENV_VARS)[number];

/** An environment, raw or parsed, as far as the TLS variables go. */
export type TlsEnv = { readonly [K in TlsVar]?: string | undefined };

/**
 * The problems of a partial set: one per missing variable, naming it. A partial set is refused
 * rather than read as "plaintext": an operator who set two of three meant TLS.
 */
export function tlsEnvIssues(env: TlsEnv): { name: TlsVar; message: string }[] {
  const set = TLS_ENV_VARS.filter((n) => env[n]);
  if (set.length === 0 || set.length === TLS_ENV_VARS.length) return [];
  return TLS_ENV_VARS.filter((n) => !env[n]).map((name) => ({
    name,
    message: `required with ${set.join(' and ')} (mTLS needs all of ${TLS_ENV_VARS.join(', ')}, or none for plaintext)`,
  }));
}

/** The files named by the GRPC_TLS_* variables, or undefined when none is set (plaintext). */
export function tlsFilesFromEnv(env: TlsEnv): TlsFiles | undefined {
  const problem = tlsEnvIssues(env)[0];
  if (problem) throw new Error(`${problem.name}: ${problem.message}`);
  const [certFile, keyFile, caFile] = TLS_ENV_VARS.map((n) => env[n]);
  return certFile && keyFile && caFile ? { certFile, keyFile, caFile } : undefined;
}

/** Reads the three files (at start-up, by a main or the CLI's options); an unreadable one throws naming it. */
export function readTlsFiles(files: TlsFiles | undefined): TlsMaterial | undefined {
  if (!files) return undefined;
  const read = (what: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new Error(`cannot read the TLS ${what} ${path}: ${(err as Error).message}`, { cause: err });
    }
  };
  return { cert: read('certificate', files.certFile), key: read('key', files.keyFile), ca: read('CA', files.caFile) };
}

/**
 * A server's credentials: TLS that requires a client certificate signed by the CA (mTLS), or
 * plaintext without material.
 */
export function serverCredentials(tls: TlsMaterial | undefined): ServerCredentials {
  if (!tls) return ServerCredentials.createInsecure();
  return ServerCredentials.createSsl(tls.ca, [{ cert_chain: tls.cert, private_key: tls.key }], true);
}

/** A client's credentials: its certificate, trusting only the mesh's CA; plaintext without material. */
export function channelCredentials(tls: TlsMaterial | undefined): ChannelCredentials {
  if (!tls) return credentials.createInsecure();
  return credentials.createSsl(tls.ca, tls.key, tls.cert);
}

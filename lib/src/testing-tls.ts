/**
 * A throw-away PKI for the mTLS tests, made with Debian's openssl in a temporary directory: the
 * mesh's CA and one certificate it signs (server and client use alike, for 127.0.0.1 and
 * localhost), plus another CA and a certificate of its own that the mesh must refuse.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readTlsFiles, type TlsFiles, type TlsMaterial } from './tls.js';

export interface TestPki {
  dir: string;
  /** The mesh's certificate, key and CA. */
  mesh: TlsFiles;
  /** A certificate for the same names, signed by another CA (its CA as `caFile`). */
  rogue: TlsFiles;
  /** The files' contents. */
  meshTls: TlsMaterial;
  rogueTls: TlsMaterial;
  /** GRPC_TLS_* naming the mesh's files, for a main or the CLI. */
  env: Record<string, string>;
  remove(): void;
}

const openssl = (dir: string, args: string[]): void => {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
};

/** A CA (`<name>-ca.pem`) and one leaf it signs (`<name>.pem`, `<name>-key.pem`). */
function makeCaAndLeaf(dir: string, name: string): TlsFiles {
  const ca = `${name}-ca.pem`;
  const caKey = `${name}-ca-key.pem`;
  openssl(
    dir,
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2'].concat([
      '-subj',
      `/CN=${name} test CA`,
      '-keyout',
      caKey,
      '-out',
      ca,
    ]),
  );
  const ext = `${name}.ext`;
  writeFileSync(
    join(dir, ext),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n',
  );
  openssl(
    dir,
    ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'].concat([
      '-subj',
      `/CN=${name}`,
      '-keyout',
      `${name}-key.pem`,
      '-out',
      `${name}.csr`,
    ]),
  );
  openssl(
    dir,
    ['x509', '-req', '-in', `${name}.csr`, '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-days', '2'].concat([
      '-extfile',
      ext,
      '-out',
      `${name}.pem`,
    ]),
  );
  return { certFile: join(dir, `${name}.pem`), keyFile: join(dir, `${name}-key.pem`), caFile: join(dir, ca) };
}

/** Makes the PKI; call remove() when done. Fails with how to install openssl when it is missing. */
export function makeTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'redpacket-pki-'));
  try {
    const mesh = makeCaAndLeaf(dir, 'mesh');
    const rogue = makeCaAndLeaf(dir, 'rogue');
    return {
      dir,
      mesh,
      rogue,
      meshTls: readTlsFiles(mesh)!,
      rogueTls: readTlsFiles(rogue)!,
      env: { GRPC_TLS_CERT_FILE: mesh.certFile, GRPC_TLS_KEY_FILE: mesh.keyFile, GRPC_TLS_CA_FILE: mesh.caFile },
      remove: () => rmSync(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`openssl failed (apt-get install openssl): ${(err as Error).message}`, { cause: err });
  }
}

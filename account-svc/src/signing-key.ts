/** account-svc's key material: the one private key it signs with and the JWKS it verifies with and serves. */
import {
  generateSigningKey,
  publicJwkOf,
  readJwksFile,
  readPrivateKeyFile,
  TokenSigner,
  TokenVerifier,
  verifierFromEnv,
  type IdentitySettings,
  type Jwks,
  type Logger,
} from '@redpacket/lib';

export interface SigningKeyOptions extends IdentitySettings {
  /** JWT_PRIVATE_KEY_FILE; absent only with REDPACKET_DEV=1 (a throwaway key is made). */
  JWT_PRIVATE_KEY_FILE?: string | undefined;
  /** JWT_KEY_ID: the header's kid, when the JWKS names the key otherwise than by its thumbprint. */
  JWT_KEY_ID?: string | undefined;
}

export interface SigningKeys {
  signer: TokenSigner;
  verifier: TokenVerifier;
  /** What /.well-known/jwks.json serves now: JWT_JWKS_FILE as it is, else the signing key's public half. */
  jwks: () => Jwks;
}

/**
 * Loads the signing key and the JWKS. Throws if JWT_JWKS_FILE does not hold the signing key:
 * every token issued would then be refused by every verifier (rotation publishes first).
 */
export function loadSigningKeys(env: SigningKeyOptions, log: Pick<Logger, 'warn'>): SigningKeys {
  let privateKeyPem: string;
  if (env.JWT_PRIVATE_KEY_FILE) {
    privateKeyPem = readPrivateKeyFile(env.JWT_PRIVATE_KEY_FILE);
  } else {
    privateKeyPem = generateSigningKey().privateKeyPem;
    log.warn('REDPACKET_DEV=1 and no JWT_PRIVATE_KEY_FILE: signing with a throwaway key made for this run');
  }
  const signer = new TokenSigner({
    privateKeyPem,
    kid: env.JWT_KEY_ID,
    issuer: env.JWT_ISSUER,
    audience: env.JWT_AUDIENCE,
  });
  const own: Jwks = { keys: [publicJwkOf(privateKeyPem, signer.kid)] };
  const file = env.JWT_JWKS_FILE;
  if (file && !readJwksFile(file).keys.some((k) => k.kid === signer.kid))
    throw new Error(`JWT_JWKS_FILE ${file} has no key ${signer.kid} (JWT_PRIVATE_KEY_FILE's): publish it first`);
  const verifier =
    file || env.JWT_JWKS_URL
      ? verifierFromEnv(env, log)
      : new TokenVerifier({ jwks: own, issuer: env.JWT_ISSUER, audience: env.JWT_AUDIENCE });
  return { signer, verifier, jwks: () => (file ? readJwksFile(file) : own) };
}

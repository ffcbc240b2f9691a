/** The JWKS document Envoy's jwt_authn verifies the mesh's HS256 tokens with, derived from JWT_SECRET. */

export interface Jwks {
  keys: { kty: 'oct'; alg: 'HS256'; use: 'sig'; k: string }[];
}

/** A symmetric key set: the secret itself, base64url-encoded (RFC 7517 "oct"). Keep the file private. */
export function jwksFromSecret(secret: string): Jwks {
  if (secret.length < 16) throw new Error('JWT secret must be at least 16 characters');
  return { keys: [{ kty: 'oct', alg: 'HS256', use: 'sig', k: Buffer.from(secret, 'utf8').toString('base64url') }] };
}

/** The JWKS handed to Envoy's jwt_authn verifies exactly the tokens the mesh signs. */
import { jwksFromSecret, signToken } from '@redpacket/lib';
import { TEST_JWT_SECRET } from '@redpacket/lib/testing';
import { importJWK, jwtVerify } from 'jose';
import { describe, expect, test } from 'vitest';

describe('jwksFromSecret', () => {
  test('verifies a token signed with the secret, and refuses one signed with another', async () => {
    // jose's JWKS helpers take only asymmetric keys; Envoy's jwt_authn takes "oct" ones too.
    const jwks = jwksFromSecret(TEST_JWT_SECRET);
    expect(jwks.keys).toHaveLength(1);
    const keySet = await importJWK(jwks.keys[0] as never, 'HS256');
    const token = await signToken({ secret: TEST_JWT_SECRET, userId: 'jwks-user' });
    const { payload } = await jwtVerify(token, keySet, { algorithms: ['HS256'] });
    expect(payload.sub).toBe('jwks-user');
    const forged = await signToken({ secret: `${TEST_JWT_SECRET}-other`, userId: 'jwks-user' });
    await expect(jwtVerify(forged, keySet, { algorithms: ['HS256'] })).rejects.toThrow(/signature/);
  });

  test('refuses a secret too short to sign with', () => {
    expect(() => jwksFromSecret('fifteen-chars!!')).toThrow(/at least 16 characters/);
    expect(jwksFromSecret('sixteen-chars!!!').keys[0]?.k).toBe(Buffer.from('sixteen-chars!!!').toString('base64url'));
  });
});

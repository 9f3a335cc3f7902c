import { generateKeyPairSync, KeyObject, sign } from 'node:crypto';
import { ErrorCode } from '../../domain/domain-error';
import { checkClaims, decodeJwt, looksLikeJwt, signatureIsValid } from './jwt-token';

const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

function jws(alg: string, key: KeyObject | undefined, signWith: (data: Buffer, key: KeyObject) => Buffer, claims: Record<string, unknown> = { sub: 'x' }): string {
  const signed = `${encode({ alg, kid: 'k' })}.${encode(claims)}`;
  return `${signed}.${key ? signWith(Buffer.from(signed), key).toString('base64url') : ''}`;
}

describe('JWT bearer tokens', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ed = generateKeyPairSync('ed25519');

  it('verifies RS256, PS256, ES256 and EdDSA signatures with keys of the matching type only', () => {
    const cases: Array<[string, KeyObject, KeyObject, (d: Buffer, k: KeyObject) => Buffer]> = [
      ['RS256', rsa.privateKey, rsa.publicKey, (d, k) => sign('sha256', d, k)],
      ['PS256', rsa.privateKey, rsa.publicKey, (d, k) => sign('sha256', d, { key: k, padding: 6, saltLength: 32 })],
      ['ES256', p256.privateKey, p256.publicKey, (d, k) => sign('sha256', d, { key: k, dsaEncoding: 'ieee-p1363' })],
      ['EdDSA', ed.privateKey, ed.publicKey, (d, k) => sign(null, d, k)],
    ];
    for (const [alg, privateKey, publicKey, signWith] of cases) {
      const jwt = decodeJwt(jws(alg, privateKey, signWith));
      expect([alg, signatureIsValid(jwt, publicKey)]).toEqual([alg, true]);
      const other = alg === 'ES256' ? rsa.publicKey : p256.publicKey;
      expect([alg, signatureIsValid(jwt, other)]).toEqual([alg, false]);
    }
  });

  it('refuses none, unsigned and symmetric algorithms before any key is looked at', () => {
    for (const [token, msg] of [
      [jws('none', undefined, () => Buffer.alloc(0)), /not signed/],
      [jws('RS256', undefined, () => Buffer.alloc(0)), /not signed/],
      [jws('HS256', rsa.privateKey, () => Buffer.from('mac')), /algorithm "HS256" is not accepted/],
      [`${encode({ alg: 'RS256', crit: ['exp'] })}.${encode({})}.c2ln`, /critical header/],
      ['bm90IGpzb24.e30.c2ln', /header is not base64url JSON/],
    ] as const) {
      expect(() => decodeJwt(token)).toThrow(expect.objectContaining({ code: ErrorCode.Unauthenticated, message: expect.stringMatching(msg) }));
    }
    expect(looksLikeJwt('opaque-token')).toBe(false);
    expect(looksLikeJwt('a.b.')).toBe(true);
  });

  it('checks exp, nbf and iat within the clock skew, the audience and the subject', () => {
    const rules = { audience: 'tesp', clockSkewS: 30, nowS: 1000 };
    const ok = { exp: 1100, sub: 's', aud: ['other', 'tesp'] };
    expect(() => checkClaims(ok, rules)).not.toThrow();
    expect(() => checkClaims({ ...ok, exp: 971 }, rules)).not.toThrow();
    expect(() => checkClaims({ ...ok, exp: 969 }, rules)).toThrow('has expired');
    expect(() => checkClaims({ ...ok, nbf: 1029 }, rules)).not.toThrow();
    expect(() => checkClaims({ ...ok, nbf: 1031 }, rules)).toThrow('not valid yet');
    expect(() => checkClaims({ ...ok, iat: 1031 }, rules)).toThrow('issued in the future');
    expect(() => checkClaims({ sub: 's', aud: 'tesp' }, rules)).toThrow('no expiry');
    expect(() => checkClaims({ ...ok, aud: 'other' }, rules)).toThrow('not meant for this server');
    expect(() => checkClaims({ ...ok, sub: '' }, rules)).toThrow('no subject');
  });
});

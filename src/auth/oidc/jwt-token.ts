import { KeyObject, constants, verify } from 'node:crypto';
import { DomainError, ErrorCode } from '../../domain/domain-error';

// A JWT bearer token: decoded without trust first (only to route it to its issuer), then checked against a key
// of that issuer and the claim rules. Asymmetric algorithms only: `none` and HS* (whose key would be a secret
// shared with every client) are refused before any key is looked at.

export const ACCEPTED_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;
export type Algorithm = (typeof ACCEPTED_ALGORITHMS)[number];

export interface DecodedJwt {
  readonly alg: Algorithm;
  readonly kid?: string;
  readonly claims: Readonly<Record<string, unknown>>;
  /** header.payload as sent: what the signature covers. */
  readonly signed: Buffer;
  readonly signature: Buffer;
}

const unauthenticated = (why: string) => new DomainError(ErrorCode.Unauthenticated, why);
const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** Whether a bearer token is shaped as a JWS (three base64url parts); anything else is opaque. */
export function looksLikeJwt(token: string): boolean {
  const parts = token.split('.');
  return parts.length === 3 && parts.every((part) => BASE64URL.test(part)) && parts[0] !== '' && parts[1] !== '';
}

export function decodeJwt(token: string): DecodedJwt {
  const [header64, payload64, signature64] = token.split('.');
  const header = parseJson(header64, 'header');
  const claims = parseJson(payload64, 'payload');
  const alg = header.alg;
  if (typeof alg !== 'string' || alg.toLowerCase() === 'none' || signature64 === '') throw unauthenticated('the bearer token is not signed');
  if (!(ACCEPTED_ALGORITHMS as readonly string[]).includes(alg)) throw unauthenticated(`the bearer token's algorithm ${JSON.stringify(alg.slice(0, 20))} is not accepted (asymmetric signatures only)`);
  if (header.crit !== undefined) throw unauthenticated('the bearer token has critical header parameters this server does not understand');
  if (header.kid !== undefined && typeof header.kid !== 'string') throw unauthenticated('the bearer token header has a kid that is not a string');
  return {
    alg: alg as Algorithm,
    kid: header.kid as string | undefined,
    claims,
    signed: Buffer.from(`${header64}.${payload64}`, 'ascii'),
    signature: Buffer.from(signature64, 'base64url'),
  };
}

function parseJson(part: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    throw unauthenticated(`the bearer token's ${what} is not base64url JSON`);
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw unauthenticated(`the bearer token's ${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

/** Whether `key` is of the type `alg` needs, so that an RSA key cannot verify an ES256 token and so on. */
export function keyFitsAlgorithm(key: KeyObject, alg: Algorithm): boolean {
  const type = key.asymmetricKeyType;
  if (alg.startsWith('RS')) return type === 'rsa';
  if (alg.startsWith('PS')) return type === 'rsa' || type === 'rsa-pss';
  if (alg === 'EdDSA') return type === 'ed25519' || type === 'ed448';
  const curve = { ES256: 'prime256v1', ES384: 'secp384r1', ES512: 'secp521r1' }[alg as 'ES256' | 'ES384' | 'ES512'];
  return type === 'ec' && key.asymmetricKeyDetails?.namedCurve === curve;
}

export function signatureIsValid(jwt: DecodedJwt, key: KeyObject): boolean {
  if (!keyFitsAlgorithm(key, jwt.alg)) return false;
  const digest = jwt.alg === 'EdDSA' ? null : `sha${jwt.alg.slice(2)}`;
  try {
    if (jwt.alg.startsWith('PS')) {
      return verify(digest, jwt.signed, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }, jwt.signature);
    }
    if (jwt.alg.startsWith('ES')) return verify(digest, jwt.signed, { key, dsaEncoding: 'ieee-p1363' }, jwt.signature);
    return verify(digest, jwt.signed, key, jwt.signature);
  } catch {
    return false;
  }
}

export interface ClaimRules {
  readonly audience: string;
  readonly clockSkewS: number;
  readonly nowS: number;
}

/** exp (required), nbf and iat within the clock skew, aud holding the audience, sub present. */
export function checkClaims(claims: Readonly<Record<string, unknown>>, rules: ClaimRules): void {
  const { exp, nbf, iat, aud, sub } = claims;
  if (typeof exp !== 'number') throw unauthenticated('the bearer token has no expiry (exp)');
  if (rules.nowS > exp + rules.clockSkewS) throw unauthenticated('the bearer token has expired');
  if (nbf !== undefined && (typeof nbf !== 'number' || rules.nowS < nbf - rules.clockSkewS)) throw unauthenticated('the bearer token is not valid yet (nbf)');
  if (iat !== undefined && (typeof iat !== 'number' || rules.nowS < iat - rules.clockSkewS)) throw unauthenticated('the bearer token was issued in the future (iat)');
  checkAudience(aud, rules.audience);
  if (typeof sub !== 'string' || sub === '') throw unauthenticated('the bearer token has no subject (sub)');
}

export function checkAudience(aud: unknown, audience: string): void {
  const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : [];
  if (!audiences.includes(audience)) throw unauthenticated(`the bearer token is not meant for this server (aud must hold ${JSON.stringify(audience)})`);
}

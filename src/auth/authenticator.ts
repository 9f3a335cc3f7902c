import type { Principal } from '../domain/principal';

// The Authenticator port: one implementation per auth mode (none, basic, oidc), built from settings by
// createAuthenticators. The guard asks each in turn; the first that recognises the request's credentials decides.

export interface AuthenticationRequest {
  /** The Authorization header as sent, if any. */
  readonly authorization: string | undefined;
}

export interface Authenticator {
  /** The WWW-Authenticate challenge a 401 offers for this mode (Basic realm="tesp", Bearer ...); none offers none. */
  readonly challenge?: string;
  /** What service-info and the docs call this mode. */
  readonly scheme: 'none' | 'basic' | 'bearer';
  /**
   * The caller, or undefined when the request carries no credentials of this mode. Credentials of this mode that are
   * not valid throw DomainError Unauthenticated (401), a known caller lacking a required scope or group Forbidden.
   */
  authenticate(request: AuthenticationRequest): Promise<Principal | undefined>;
}

export const AUTHENTICATORS = Symbol('AUTHENTICATORS');

/** "Basic abc" -> ["basic", "abc"]; the scheme is case-insensitive (RFC 9110), credentials are kept as sent. */
export function splitAuthorization(header: string): { scheme: string; credentials: string } {
  const trimmed = header.trim();
  const space = trimmed.search(/\s/);
  if (space === -1) return { scheme: trimmed.toLowerCase(), credentials: '' };
  return { scheme: trimmed.slice(0, space).toLowerCase(), credentials: trimmed.slice(space).trim() };
}

import { DomainError, ErrorCode } from '../../domain/domain-error';
import type { Principal } from '../../domain/principal';
import type { AdminRule } from '../admin-rule';
import { AuthenticationRequest, Authenticator, splitAuthorization } from '../authenticator';
import type { IssuerConnection } from './issuer-connection';
import { checkAudience, checkClaims, decodeJwt, looksLikeJwt, signatureIsValid } from './jwt-token';

export interface OidcRules {
  readonly audience: string;
  readonly requiredScopes: readonly string[];
  readonly requiredGroups: readonly string[];
  readonly groupsClaim: string;
  readonly clockSkewS: number;
  /** Where opaque tokens are introspected; undefined: they are refused. */
  readonly introspectAt?: IssuerConnection;
}

const unauthenticated = (why: string) => new DomainError(ErrorCode.Unauthenticated, why);

/**
 * OpenID Connect bearer tokens of the listed issuers (auth.oidc). The caller's name is `<issuer>#<sub>`: stable,
 * and unique across issuers.
 */
export class OidcAuthenticator implements Authenticator {
  readonly scheme = 'bearer' as const;
  readonly challenge = 'Bearer realm="tesp"';
  private readonly issuers: ReadonlyMap<string, IssuerConnection>;

  constructor(
    issuers: readonly IssuerConnection[],
    private readonly rules: OidcRules,
    private readonly admins: AdminRule,
    private readonly now: () => number = Date.now,
  ) {
    this.issuers = new Map(issuers.map((connection) => [connection.issuer, connection]));
  }

  async authenticate(request: AuthenticationRequest): Promise<Principal | undefined> {
    if (request.authorization === undefined) return undefined;
    const { scheme, credentials: token } = splitAuthorization(request.authorization);
    if (scheme !== 'bearer') return undefined;
    if (token === '') throw unauthenticated('the bearer token is empty');
    const claims = looksLikeJwt(token) ? await this.verifyJwt(token) : await this.introspect(token);
    return this.principalOf(claims);
  }

  private async verifyJwt(token: string): Promise<Readonly<Record<string, unknown>>> {
    const jwt = decodeJwt(token);
    // Routed by the unverified iss: an issuer not listed is refused here, before anything is fetched.
    const issuer = typeof jwt.claims.iss === 'string' ? this.issuers.get(jwt.claims.iss) : undefined;
    if (!issuer) throw unauthenticated('the bearer token is not from an issuer this server accepts (auth.oidc.issuers)');
    const keys = await issuer.keysFor(jwt.kid);
    if (keys.length === 0) throw unauthenticated('the bearer token is signed with a key its issuer does not publish');
    if (!keys.some((key) => signatureIsValid(jwt, key))) throw unauthenticated('the bearer token\'s signature is not valid');
    checkClaims(jwt.claims, { audience: this.rules.audience, clockSkewS: this.rules.clockSkewS, nowS: this.now() / 1000 });
    return jwt.claims;
  }

  private async introspect(token: string): Promise<Readonly<Record<string, unknown>>> {
    const at = this.rules.introspectAt;
    if (!at) throw unauthenticated('the bearer token is not a JWT, and this server does not introspect opaque tokens');
    const claims = await at.introspect(token);
    if (claims.active !== true) throw unauthenticated('the bearer token is not active (introspection)');
    if (claims.aud !== undefined) checkAudience(claims.aud, this.rules.audience);
    if (typeof claims.exp === 'number' && this.now() / 1000 > claims.exp + this.rules.clockSkewS) throw unauthenticated('the bearer token has expired');
    // RFC 7662 makes sub optional; a client-credentials token stands for its client.
    const sub = typeof claims.sub === 'string' && claims.sub !== '' ? claims.sub : claims.client_id;
    if (typeof sub !== 'string' || sub === '') throw unauthenticated('the bearer token has no subject (sub or client_id)');
    return { ...claims, sub, iss: at.issuer };
  }

  private principalOf(claims: Readonly<Record<string, unknown>>): Principal {
    const name = `${String(claims.iss)}#${String(claims.sub)}`;
    const groups = stringsOf(claims[this.rules.groupsClaim]);
    const scopes = stringsOf(claims.scope ?? claims.scp);
    const missingScopes = this.rules.requiredScopes.filter((scope) => !scopes.includes(scope));
    if (missingScopes.length > 0) throw new DomainError(ErrorCode.Forbidden, `the bearer token lacks the scope(s) ${missingScopes.join(', ')} (auth.oidc.required_scopes)`);
    const missingGroups = this.rules.requiredGroups.filter((group) => !groups.includes(group));
    if (missingGroups.length > 0) throw new DomainError(ErrorCode.Forbidden, `the caller is not in the group(s) ${missingGroups.join(', ')} (auth.oidc.required_groups)`);
    return Object.freeze({ name, admin: this.admins.isAdmin(name, groups, claims), groups: Object.freeze(groups), via: 'oidc' as const });
  }
}

/** A claim that is a list of strings, or a space-separated string (as `scope` is). */
function stringsOf(value: unknown): string[] {
  if (typeof value === 'string') return value.split(' ').filter(Boolean);
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
}

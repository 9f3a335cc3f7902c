import { createPublicKey, KeyObject } from 'node:crypto';
import type * as OpenIdClient from 'openid-client';
import { DomainError, ErrorCode } from '../../domain/domain-error';
import { errorMessage } from '../../common/redact';
import type { Logger } from '../../common/logger';

// One listed issuer: its discovery document (through openid-client), its signing keys (the JWKS, fetched again
// when a token names a key not in it: key rotation) and its introspection endpoint. Nothing is fetched until a
// token of this issuer arrives; a failed discovery is tried again by a later request.

/** After a failed discovery, requests answer 503 for this long before discovery is tried again. */
const DISCOVERY_RETRY_MS = 5_000;

export interface IssuerOptions {
  readonly issuer: string;
  readonly requestTimeoutMs: number;
  readonly jwksRefetchIntervalMs: number;
  /** For introspection; discovery needs a client id even without it. */
  readonly clientId: string;
  readonly clientSecret?: string;
  readonly now?: () => number;
}

type Jwks = { keys?: unknown };

// openid-client 6 is an ES module: required on first use (Node 20.19 loads ES modules with require), so that
// importing this file does not load it, which keeps test runners without ES module support working.
let openIdClient: typeof OpenIdClient | undefined;
function loadOpenIdClient(): typeof OpenIdClient {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  openIdClient ??= require('openid-client') as typeof OpenIdClient;
  return openIdClient;
}

export class IssuerConnection {
  private configuration?: Promise<OpenIdClient.Configuration>;
  private discoveryFailedAt = -Infinity;
  private keys?: Promise<Map<string | undefined, KeyObject[]>>;
  private lastRefetchAt = -Infinity;
  private readonly now: () => number;

  constructor(
    private readonly options: IssuerOptions,
    private readonly logger: Logger,
  ) {
    this.now = options.now ?? Date.now;
  }

  get issuer(): string {
    return this.options.issuer;
  }

  /** Keys that may have signed a token with this kid (all keys when the token names none). */
  async keysFor(kid: string | undefined): Promise<KeyObject[]> {
    this.keys ??= this.fetchKeys();
    let keys = await this.keys;
    const found = (map: Map<string | undefined, KeyObject[]>) => (kid === undefined ? [...map.values()].flat() : map.get(kid) ?? []);
    if (found(keys).length > 0) return found(keys);
    // A kid we do not know: the issuer may have rotated its keys. Fetch again, but not more often than set, so that
    // tokens naming made-up kids cannot make us hammer the issuer.
    // Within the interval, a refetch another request started may still bring the key: this.keys is that fetch then.
    if (this.now() - this.lastRefetchAt < this.options.jwksRefetchIntervalMs) return this.keys ? found(await this.keys) : [];
    this.lastRefetchAt = this.now();
    this.keys = this.fetchKeys();
    keys = await this.keys;
    return found(keys);
  }

  async introspect(token: string): Promise<Record<string, unknown>> {
    const configuration = await this.discover();
    try {
      return { ...(await loadOpenIdClient().tokenIntrospection(configuration, token)) };
    } catch (err) {
      this.logger.warn({ issuer: this.issuer, err: errorMessage(err) }, 'token introspection failed');
      throw new DomainError(ErrorCode.Unavailable, `token introspection at ${this.issuer} failed`, true);
    }
  }

  private async fetchKeys(): Promise<Map<string | undefined, KeyObject[]>> {
    try {
      const jwksUri = (await this.discover()).serverMetadata().jwks_uri;
      if (!jwksUri) throw new Error('the discovery document names no jwks_uri');
      const response = await fetch(jwksUri, { signal: AbortSignal.timeout(this.options.requestTimeoutMs), redirect: 'error' });
      if (!response.ok) throw new Error(`${jwksUri} answered ${response.status}`);
      return signingKeys((await response.json()) as Jwks);
    } catch (err) {
      this.keys = undefined;
      if (err instanceof DomainError) throw err;
      this.logger.warn({ issuer: this.issuer, err: errorMessage(err) }, 'could not fetch the issuer\'s signing keys');
      throw new DomainError(ErrorCode.Unavailable, `the signing keys of ${this.issuer} could not be fetched`, true);
    }
  }

  private discover(): Promise<OpenIdClient.Configuration> {
    if (!this.configuration) {
      if (this.now() - this.discoveryFailedAt < DISCOVERY_RETRY_MS) {
        return Promise.reject(new DomainError(ErrorCode.Unavailable, `the issuer ${this.issuer} could not be reached; retrying shortly`, true));
      }
      this.configuration = this.runDiscovery().catch((err: unknown) => {
        this.configuration = undefined;
        this.discoveryFailedAt = this.now();
        this.logger.warn({ issuer: this.issuer, err: errorMessage(err) }, 'OpenID Connect discovery failed');
        throw new DomainError(ErrorCode.Unavailable, `the issuer ${this.issuer} could not be reached`, true);
      });
    }
    return this.configuration;
  }

  private async runDiscovery(): Promise<OpenIdClient.Configuration> {
    const client = loadOpenIdClient();
    const url = new URL(this.options.issuer);
    const { clientId, clientSecret } = this.options;
    const configuration = await client.discovery(url, clientId, undefined, clientSecret ? client.ClientSecretBasic(clientSecret) : client.None(), {
      timeout: Math.ceil(this.options.requestTimeoutMs / 1000),
      // Settings allow http issuers on loopback only (auth.oidc.issuers).
      execute: url.protocol === 'http:' ? [client.allowInsecureRequests] : [],
    });
    this.logger.info({ issuer: this.issuer }, 'OpenID Connect issuer discovered');
    return configuration;
  }
}

/** The JWKS's signature keys by kid; keys that are symmetric, for encryption, or not importable are left out. */
function signingKeys(jwks: Jwks): Map<string | undefined, KeyObject[]> {
  const keys = new Map<string | undefined, KeyObject[]>();
  for (const jwk of Array.isArray(jwks.keys) ? (jwks.keys as Array<Record<string, unknown>>) : []) {
    if (!jwk || typeof jwk !== 'object' || jwk.kty === 'oct' || (jwk.use !== undefined && jwk.use !== 'sig')) continue;
    let key: KeyObject;
    try {
      key = createPublicKey({ key: jwk as never, format: 'jwk' });
    } catch {
      continue;
    }
    const kid = typeof jwk.kid === 'string' ? jwk.kid : undefined;
    keys.set(kid, [...(keys.get(kid) ?? []), key]);
  }
  return keys;
}

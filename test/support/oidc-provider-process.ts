// Runs test/support/oidc-provider.mjs (the real oidc-provider package, an ES module) as a child process, and talks
// to it the way a client of that provider would. The test's own requests carry x-test-client, so the provider's
// request count shows only what others (tesp) sent it.
import { ChildProcess, spawn } from 'node:child_process';
import { createPrivateKey, KeyObject, sign } from 'node:crypto';
import * as path from 'node:path';

const SCRIPT = path.resolve(__dirname, 'oidc-provider.mjs');

export interface OidcClient {
  id: string;
  secret: string;
  groups?: string[];
}

export class OidcProviderProcess {
  private constructor(
    private readonly child: ChildProcess,
    readonly issuer: string,
    private readonly clients: readonly OidcClient[],
  ) {}

  static async start(audience: string, clients: OidcClient[]): Promise<OidcProviderProcess> {
    const child = spawn(process.execPath, [SCRIPT, audience, JSON.stringify(clients)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let errors = '';
    child.stderr?.on('data', (chunk: Buffer) => (errors += chunk.toString()));
    const issuer = await new Promise<string>((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`oidc-provider.mjs exited with ${code}: ${errors}`)));
      child.stdout?.once('data', (chunk: Buffer) => resolve(JSON.parse(String(chunk)).issuer as string));
    });
    return new OidcProviderProcess(child, issuer, clients);
  }

  private request(pathname: string, init: RequestInit = {}): Promise<Response> {
    return fetch(`${this.issuer}${pathname}`, { ...init, headers: { 'x-test-client': '1', ...(init.headers as Record<string, string>) } });
  }

  /** A client-credentials access token: a JWT (resource urn:tesp:jwt) or opaque (urn:tesp:opaque). */
  async token(clientId: string, options: { scope?: string; resource?: string } = {}): Promise<string> {
    const client = this.clients.find((c) => c.id === clientId)!;
    const body = new URLSearchParams({ grant_type: 'client_credentials', resource: options.resource ?? 'urn:tesp:jwt', scope: options.scope ?? 'tes:read tes:write' });
    const res = await this.request('/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${client.id}:${client.secret}`).toString('base64')}` },
      body,
    });
    const json = (await res.json()) as { access_token?: string };
    if (!res.ok || !json.access_token) throw new Error(`token endpoint answered ${res.status}: ${JSON.stringify(json)}`);
    return json.access_token;
  }

  /** Requests received from anyone but the test. */
  async requestCount(): Promise<number> {
    return ((await (await this.request('/__count')).json()) as { count: number }).count;
  }

  /** The provider's current private signing key (to sign tokens the provider would not issue). */
  async signingKey(): Promise<{ key: KeyObject; kid: string }> {
    const jwk = (await (await this.request('/__key')).json()) as { kid: string };
    return { key: createPrivateKey({ key: jwk as never, format: 'jwk' }), kid: jwk.kid };
  }

  /** A new signing key with a new kid; tokens issued from now on carry it. */
  async rotate(): Promise<string> {
    return ((await (await this.request('/__rotate', { method: 'POST' })).json()) as { kid: string }).kid;
  }

  stop(): void {
    this.child.kill('SIGTERM');
  }
}

/** A JWS over header and claims as given, RS256 with `key` (or the signature left empty when key is undefined). */
export function signJwt(header: Record<string, unknown>, claims: Record<string, unknown>, key?: KeyObject): string {
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const signed = `${encode(header)}.${encode(claims)}`;
  return `${signed}.${key ? sign('sha256', Buffer.from(signed), key).toString('base64url') : ''}`;
}

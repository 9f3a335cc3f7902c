import { createHash, randomBytes } from 'node:crypto';
import * as bcrypt from 'bcryptjs';
import type { HtpasswdEntry } from '../../config/auth-entries';
import { DomainError, ErrorCode } from '../../domain/domain-error';
import type { Principal } from '../../domain/principal';
import type { AdminRule } from '../admin-rule';
import { AuthenticationRequest, Authenticator, splitAuthorization } from '../authenticator';

export const BASIC_REALM = 'tesp';

/** Verified headers remembered at once; the oldest is forgotten first. */
const CACHE_ENTRIES = 1000;

const unauthenticated = (why: string) => new DomainError(ErrorCode.Unauthenticated, why);

/** HTTP Basic against htpasswd bcrypt entries (auth.basic.users and users_file). */
export class BasicAuthenticator implements Authenticator {
  readonly scheme = 'basic' as const;
  readonly challenge = `Basic realm="${BASIC_REALM}", charset="UTF-8"`;
  private readonly hashes: ReadonlyMap<string, string>;
  /** An unknown user is compared against this, so that refusing one takes as long as a wrong password. */
  private readonly dummyHash: string;
  // Polling clients send the same header every few seconds; a bcrypt each time would cost ~100 ms of CPU. Keyed by
  // a digest of the header, so the cache holds no password.
  private readonly verified = new Map<string, { principal: Principal; until: number }>();

  constructor(
    entries: readonly HtpasswdEntry[],
    private readonly admins: AdminRule,
    private readonly cacheTtlMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.hashes = new Map(entries.map((entry) => [entry.user, entry.hash]));
    const rounds = entries.length > 0 ? bcrypt.getRounds(entries[0].hash) : 10;
    this.dummyHash = bcrypt.hashSync(randomBytes(16).toString('hex'), rounds);
  }

  async authenticate(request: AuthenticationRequest): Promise<Principal | undefined> {
    if (request.authorization === undefined) return undefined;
    const { scheme, credentials } = splitAuthorization(request.authorization);
    if (scheme !== 'basic') return undefined;
    const key = createHash('sha256').update(request.authorization).digest('base64');
    const cached = this.verified.get(key);
    if (cached && cached.until > this.now()) return cached.principal;
    if (cached) this.verified.delete(key);

    const { user, password } = decodeCredentials(credentials);
    const hash = this.hashes.get(user);
    const matches = await bcrypt.compare(password, hash ?? this.dummyHash);
    if (!hash || !matches) throw unauthenticated('the user name or password is not valid');
    const principal: Principal = Object.freeze({ name: user, admin: this.admins.isAdmin(user, []), groups: Object.freeze([]), via: 'basic' as const });
    if (this.cacheTtlMs > 0) {
      if (this.verified.size >= CACHE_ENTRIES) this.verified.delete(this.verified.keys().next().value as string);
      this.verified.set(key, { principal, until: this.now() + this.cacheTtlMs });
    }
    return principal;
  }
}

function decodeCredentials(credentials: string): { user: string; password: string } {
  if (credentials === '') throw unauthenticated('the Basic credentials are empty; send base64 of name:password');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(credentials) || credentials.length % 4 === 1) throw unauthenticated('the Basic credentials are not base64');
  const decoded = Buffer.from(credentials, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) throw unauthenticated('the Basic credentials are not name:password');
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

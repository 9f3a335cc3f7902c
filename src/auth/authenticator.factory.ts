import { readFileSync } from 'node:fs';
import { htpasswdFileLines, HtpasswdEntry, parseHtpasswdEntries } from '../config/auth-entries';
import { SettingsError } from '../config/settings.loader';
import type { Settings } from '../config/settings.schema';
import type { Logger } from '../common/logger';
import { AdminRule } from './admin-rule';
import type { Authenticator } from './authenticator';
import { BasicAuthenticator } from './basic/basic.authenticator';
import { NoneAuthenticator } from './none.authenticator';
import { IssuerConnection } from './oidc/issuer-connection';
import { OidcAuthenticator } from './oidc/oidc.authenticator';

/** The authenticators of auth.modes, in that order; settings the modes need are checked here, at start-up. */
export function createAuthenticators(settings: Settings, logger: Logger): Authenticator[] {
  const auth = settings.auth;
  const admins = new AdminRule(auth.admin);
  return auth.modes.map((mode): Authenticator => {
    switch (mode) {
      case 'basic':
        return new BasicAuthenticator(basicUsers(auth.basic), admins, auth.basic.cache_ttl_s * 1000);
      case 'oidc':
        return oidcAuthenticator(auth.oidc, admins, logger);
      default:
        return new NoneAuthenticator();
    }
  });
}

function basicUsers(basic: Settings['auth']['basic']): HtpasswdEntry[] {
  const entries = [...parseHtpasswdEntries(basic.users)];
  if (basic.users_file) {
    const { lines, lineNumbers } = htpasswdFileLines(readSettingFile('auth.basic.users_file', basic.users_file));
    try {
      entries.push(...parseHtpasswdEntries(lines, (i) => `auth.basic.users_file (${basic.users_file}) line ${lineNumbers[i]}`));
    } catch (err) {
      throw new SettingsError((err as Error).message);
    }
  }
  const users = entries.map((entry) => entry.user);
  const twice = users.find((user, i) => users.indexOf(user) !== i);
  if (twice) throw new SettingsError(`auth.basic: the user "${twice}" is given twice (users and users_file)`);
  if (entries.length === 0) throw new SettingsError('auth.modes has basic, but neither auth.basic.users nor auth.basic.users_file holds a user');
  return entries;
}

function oidcAuthenticator(oidc: Settings['auth']['oidc'], admins: AdminRule, logger: Logger): OidcAuthenticator {
  if (oidc.issuers.length === 0) throw new SettingsError('auth.modes has oidc, but auth.oidc.issuers lists no issuer');
  if (!oidc.audience) throw new SettingsError('auth.modes has oidc, but auth.oidc.audience is empty: set the audience tokens for tesp carry');
  const clientSecret = oidc.introspection_client_secret_file
    ? readSettingFile('auth.oidc.introspection_client_secret_file', oidc.introspection_client_secret_file).trim()
    : oidc.introspection_client_secret;
  if (Boolean(oidc.introspection_client_id) !== Boolean(clientSecret)) {
    throw new SettingsError('auth.oidc: introspection needs both introspection_client_id and a client secret (introspection_client_secret or _file)');
  }
  const connections = oidc.issuers.map(
    (issuer, i) =>
      new IssuerConnection(
        {
          issuer,
          requestTimeoutMs: oidc.request_timeout_ms,
          jwksRefetchIntervalMs: oidc.jwks_refetch_interval_s * 1000,
          clientId: oidc.introspection_client_id || 'tesp',
          // Introspection is done at the first issuer only; the others need no client secret.
          clientSecret: i === 0 && clientSecret ? clientSecret : undefined,
        },
        logger,
      ),
  );
  return new OidcAuthenticator(connections, {
    audience: oidc.audience,
    requiredScopes: oidc.required_scopes,
    requiredGroups: oidc.required_groups,
    groupsClaim: oidc.groups_claim,
    clockSkewS: oidc.clock_skew_s,
    introspectAt: oidc.introspection_client_id ? connections[0] : undefined,
  }, admins);
}

/** A setting's file (a mounted secret): a missing or empty file names the setting and the path, never the content. */
function readSettingFile(key: string, file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new SettingsError(`${key}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  if (text.trim() === '') throw new SettingsError(`${key}: ${file} is empty`);
  return text;
}

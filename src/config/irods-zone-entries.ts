import { redactUrl } from '../common/redact';
import { DomainError, ErrorCode } from '../domain/domain-error';
import { settingEntries, userAndPassword } from './setting-entries';

/** How tesp authenticates to a zone's iRODS HTTP API. */
export type IrodsAuth = { kind: 'basic'; user: string; password: string } | { kind: 'bearer'; token: string };

const BASE_URL = /^https?:\/\/[^/@\s]+\/irods-http-api\/\d+\.\d+\.\d+\/?$/;

/** storage.irods.zones: "zone=http(s)://host:port/irods-http-api/<version>" entries, by zone (no trailing slash). */
export function parseIrodsZones(entries: readonly string[]): Map<string, string> {
  const zones = new Map<string, string>();
  for (const [zone, base] of settingEntries('storage.irods.zones', entries, 'zone')) {
    if (!BASE_URL.test(base)) {
      throw new DomainError(ErrorCode.InvalidArgument, `storage.irods.zones: "${zone}=${redactUrl(base)}" is not zone=http(s)://host:port/irods-http-api/<version>`);
    }
    zones.set(zone, base.replace(/\/$/, ''));
  }
  return zones;
}

/** storage.irods.credentials ("zone=user:password") and storage.irods.access_tokens ("zone=token"), by zone. */
export function parseIrodsAuth(credentials: readonly string[], accessTokens: readonly string[]): Map<string, IrodsAuth> {
  const auth = new Map<string, IrodsAuth>();
  for (const [zone, value] of settingEntries('storage.irods.credentials', credentials, 'zone')) {
    auth.set(zone, { kind: 'basic', ...userAndPassword('storage.irods.credentials', zone, 'zone', value) });
  }
  for (const [zone, token] of settingEntries('storage.irods.access_tokens', accessTokens, 'zone')) auth.set(zone, { kind: 'bearer', token });
  return auth;
}

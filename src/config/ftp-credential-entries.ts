import { DomainError, ErrorCode } from '../domain/domain-error';
import { settingEntries, userAndPassword } from './setting-entries';

const KEY = 'storage.ftp.credentials';
const HOST = /^[a-z0-9.-]+(:\d{1,5})?$|^\[[0-9a-f:.]+\](:\d{1,5})?$/i;

/** storage.ftp.credentials: "host[:port]=user:password" entries, by lower-case host[:port]. */
export function parseFtpCredentials(entries: readonly string[]): Map<string, { user: string; password: string }> {
  const credentials = new Map<string, { user: string; password: string }>();
  for (const [host, value] of settingEntries(KEY, entries, 'host[:port]')) {
    if (!HOST.test(host)) throw new DomainError(ErrorCode.InvalidArgument, `${KEY}: "${host}" is not host or host:port`);
    credentials.set(host.toLowerCase(), userAndPassword(KEY, host, 'host[:port]', value));
  }
  return credentials;
}

import { DomainError, ErrorCode } from '../domain/domain-error';
import { settingEntries } from './setting-entries';

const KEY = 'storage.sftp.hosts';
const HOST = /^([a-z0-9.-]+|\[[0-9a-f:.]+\])(:(\d{1,5}))?$/i;
const OPTIONS = new Set(['key_file', 'passphrase_file', 'password_file', 'password', 'agent']);

/** How tesp logs in to one SFTP host. Secrets stay in files where possible; `password` is the inline exception. */
export interface SftpHostLogin {
  host: string;
  port: number;
  user: string;
  keyFile?: string;
  passphraseFile?: string;
  passwordFile?: string;
  password?: string;
  /** Path of an ssh-agent socket. */
  agent?: string;
}

/**
 * storage.sftp.hosts: "host[:port]=user;key_file=PATH;passphrase_file=PATH;password_file=PATH;password=..;agent=SOCKET"
 * entries (options optional, at least one way to log in), by lower-case "host:port" (port 22 when not given).
 * Messages name the host and the option, never an option's value.
 */
export function parseSftpHosts(entries: readonly string[]): Map<string, SftpHostLogin> {
  const hosts = new Map<string, SftpHostLogin>();
  for (const [name, value] of settingEntries(KEY, entries, 'host[:port]')) {
    const match = HOST.exec(name);
    if (!match) throw new DomainError(ErrorCode.InvalidArgument, `${KEY}: "${name}" is not host or host:port`);
    const port = match[3] ? Number(match[3]) : 22;
    if (port < 1 || port > 65535) throw new DomainError(ErrorCode.InvalidArgument, `${KEY}: the port of "${name}" is not 1-65535`);
    const host = match[1].replace(/^\[|\]$/g, '').toLowerCase();
    const [user, ...options] = value.split(';');
    if (!user.trim() || /[\s:@]/.test(user.trim())) {
      throw new DomainError(ErrorCode.InvalidArgument, `${KEY}: the entry for "${name}" is not host[:port]=user;option=value;...`);
    }
    const login: SftpHostLogin = { host, port, user: user.trim() };
    for (const option of options) {
      if (!option.trim()) continue;
      const eq = option.indexOf('=');
      const key = (eq > 0 ? option.slice(0, eq) : option).trim();
      if (!OPTIONS.has(key)) throw new DomainError(ErrorCode.InvalidArgument, `${KEY}: the entry for "${name}" has an unknown option "${eq > 0 ? key : '(no key)'}" (known: ${[...OPTIONS].join(', ')})`);
      // A password may hold anything, so only its emptiness is checked; the other values are paths.
      const optionValue = key === 'password' ? option.slice(eq + 1) : option.slice(eq + 1).trim();
      if (eq <= 0 || !optionValue) throw new DomainError(ErrorCode.InvalidArgument, `${KEY}: the entry for "${name}" has an empty ${key}`);
      if (key === 'key_file') login.keyFile = optionValue;
      else if (key === 'passphrase_file') login.passphraseFile = optionValue;
      else if (key === 'password_file') login.passwordFile = optionValue;
      else if (key === 'password') login.password = optionValue;
      else login.agent = optionValue;
    }
    if (login.password !== undefined && login.passwordFile) throw new DomainError(ErrorCode.InvalidArgument, `${KEY}: the entry for "${name}" has both password and password_file`);
    if (login.passphraseFile && !login.keyFile) throw new DomainError(ErrorCode.InvalidArgument, `${KEY}: the entry for "${name}" has a passphrase_file but no key_file`);
    if (!login.keyFile && !login.agent && login.password === undefined && !login.passwordFile) {
      throw new DomainError(ErrorCode.InvalidArgument, `${KEY}: the entry for "${name}" has no way to log in (key_file, agent, password_file or password)`);
    }
    const id = `${host}:${port}`;
    if (hosts.has(id)) throw new DomainError(ErrorCode.InvalidArgument, `${KEY}: "${name}" is given twice`);
    hosts.set(id, login);
  }
  return hosts;
}

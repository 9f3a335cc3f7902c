import { DomainError, ErrorCode } from '../domain/domain-error';

// Checks of the auth.* lists, used by the settings schema (so a bad entry stops start-up like any other bad value)
// and by the Basic authenticator for auth.basic.users_file. Messages name an entry by its index, never its hash.

export interface HtpasswdEntry {
  readonly user: string;
  /** A bcrypt hash as bcryptjs reads it ($2y$ of Apache's htpasswd is the same algorithm as $2b$). */
  readonly hash: string;
}

export const AUTH_MODES = ['none', 'basic', 'oidc'] as const;
export type AuthMode = (typeof AUTH_MODES)[number];

// What `htpasswd -nbB user password` prints: user:$2y$<cost>$<53 characters of bcrypt's base64>.
const HTPASSWD_BCRYPT = /^([^:\s]+):(\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53})$/;

/** `where` names the list in the message: "entry 2", "auth.basic.users_file line 3". */
export function parseHtpasswdEntries(lines: readonly string[], where: (index: number) => string = (i) => `entry ${i}`): HtpasswdEntry[] {
  const seen = new Set<string>();
  return lines.map((line, index) => {
    const match = HTPASSWD_BCRYPT.exec(line.trim());
    if (!match) throw new DomainError(ErrorCode.InvalidArgument, `${where(index)} is not name:$2y$... (a bcrypt line as \`htpasswd -nbB name password\` writes it)`);
    const user = match[1];
    if (seen.has(user)) throw new DomainError(ErrorCode.InvalidArgument, `${where(index)}: the user "${user}" is given twice`);
    seen.add(user);
    return { user, hash: match[2].replace(/^\$2y\$/, '$2b$') };
  });
}

/** Lines of an htpasswd file that hold entries (blank lines and # comments are skipped), with their line numbers. */
export function htpasswdFileLines(text: string): { lines: string[]; lineNumbers: number[] } {
  const lines: string[] = [];
  const lineNumbers: number[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === '' || line.trim().startsWith('#')) return;
    lines.push(line);
    lineNumbers.push(i + 1);
  });
  return { lines, lineNumbers };
}

export function checkAuthModes(modes: readonly string[]): void {
  if (modes.length === 0) throw new Error('needs at least one mode (none, basic, oidc)');
  modes.forEach((mode, i) => {
    if (!(AUTH_MODES as readonly string[]).includes(mode)) throw new Error(`entry ${i} ("${mode}") is not one of none, basic, oidc`);
    if (modes.indexOf(mode) !== i) throw new Error(`"${mode}" is given twice`);
  });
  if (modes.includes('none') && modes.length > 1) throw new Error('"none" cannot be combined with other modes: it would let every caller in');
}

const LOOPBACK_HOST = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/;

/** Issuer URLs as their discovery documents name them: https, or http on loopback only (tests, a local provider). */
export function checkIssuers(issuers: readonly string[]): void {
  issuers.forEach((issuer, i) => {
    let url: URL;
    try {
      url = new URL(issuer);
    } catch {
      throw new Error(`entry ${i} ("${issuer}") is not a URL`);
    }
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && LOOPBACK_HOST.test(url.hostname))) {
      throw new Error(`entry ${i} ("${issuer}") must be an https URL (http only on loopback)`);
    }
    if (url.username || url.password || url.search || url.hash) throw new Error(`entry ${i} must be an issuer URL without credentials, query or fragment`);
    if (issuers.indexOf(issuer) !== i) throw new Error(`entry ${i} ("${issuer}") is given twice`);
  });
}

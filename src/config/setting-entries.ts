import { DomainError, ErrorCode } from '../domain/domain-error';

// Storage settings that map a name (a zone, a host, a bucket) to a value are lists of "name=value" entries.
// They are checked when the backend is built at start-up; messages name the setting and the entry's name, never
// its value, which may hold a password.

/** Splits "name=value" entries; `nameForm` says what the name is, for the error ("zone", "host[:port]", ...). */
export function settingEntries(key: string, list: readonly string[], nameForm: string): [string, string][] {
  const seen = new Set<string>();
  return list.map((entry, index) => {
    const eq = entry.indexOf('=');
    if (eq <= 0) throw new DomainError(ErrorCode.InvalidArgument, `${key}[${index}] is not ${nameForm}=value`);
    const name = entry.slice(0, eq).trim();
    if (seen.has(name.toLowerCase())) throw new DomainError(ErrorCode.InvalidArgument, `${key}: "${name}" is given twice`);
    seen.add(name.toLowerCase());
    return [name, entry.slice(eq + 1)];
  });
}

/** "user:password" (the password may hold colons; the user may not be empty). */
export function userAndPassword(key: string, name: string, nameForm: string, value: string): { user: string; password: string } {
  const colon = value.indexOf(':');
  if (colon <= 0) throw new DomainError(ErrorCode.InvalidArgument, `${key}: the entry for "${name}" is not ${nameForm}=user:password`);
  return { user: value.slice(0, colon), password: value.slice(colon + 1) };
}

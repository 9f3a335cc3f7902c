import { createHmac, timingSafeEqual } from 'node:crypto';

// Host keys checked the way OpenSSH checks them against a known_hosts file: lines of "[marker] patterns keytype
// base64-key [comment]", where patterns are comma-separated host names ("[host]:port" for a port other than 22),
// wildcards (* ?), negations (!pattern) or one hashed name "|1|base64-salt|base64-HMAC-SHA1(salt, name)".

export type HostKeyVerdict = 'known' | 'unknown' | 'changed' | 'revoked';

interface KnownHostLine {
  marker?: string;
  patterns: string;
  keyType: string;
  key: Buffer;
}

/** The name known_hosts uses for a host: "host" on port 22, "[host]:port" otherwise. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** The key type inside an SSH key blob (its first string), e.g. "ssh-ed25519". */
function blobKeyType(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const length = blob.readUInt32BE(0);
  return length > 0 && 4 + length <= blob.length ? blob.subarray(4, 4 + length).toString('latin1') : undefined;
}

function parseLines(text: string): KnownHostLine[] {
  const lines: KnownHostLine[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const fields = line.split(/\s+/);
    const marker = fields[0].startsWith('@') ? fields.shift() : undefined;
    if (fields.length < 3) continue;
    lines.push({ marker, patterns: fields[0], keyType: fields[1], key: Buffer.from(fields[2], 'base64') });
  }
  return lines;
}

function wildcardMatch(pattern: string, name: string): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 'i');
  return re.test(name);
}

function hashedMatch(entry: string, name: string): boolean {
  const [, kind, salt, hash] = entry.split('|');
  if (kind !== '1' || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64');
  const actual = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest();
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/** Whether a line's patterns name the host (a matching negation excludes it whatever else matches). */
function linesNames(patterns: string, name: string): boolean {
  if (patterns.startsWith('|')) return hashedMatch(patterns, name);
  let matched = false;
  for (const pattern of patterns.split(',')) {
    if (pattern.startsWith('!')) {
      if (wildcardMatch(pattern.slice(1), name)) return false;
    } else if (wildcardMatch(pattern, name)) matched = true;
  }
  return matched;
}

/**
 * The verdict on `offered` (the key blob the server presented) for `host`:`port`: known when a line for the host
 * holds that key; changed when lines for the host hold another key of the same type; revoked when the key is
 * marked @revoked; unknown otherwise. @cert-authority lines are not used (no certificate support).
 */
export function verifyHostKey(knownHostsText: string, host: string, port: number, offered: Buffer): HostKeyVerdict {
  const name = knownHostsName(host.toLowerCase(), port);
  const offeredType = blobKeyType(offered);
  let sameTypeOther = false;
  let known = false;
  for (const line of parseLines(knownHostsText)) {
    if (line.marker === '@cert-authority') continue;
    const sameKey = line.key.equals(offered);
    if (line.marker === '@revoked') {
      if (sameKey) return 'revoked';
      continue;
    }
    if (line.marker || !linesNames(line.patterns, name)) continue;
    if (sameKey) known = true;
    else if (line.keyType === offeredType) sameTypeOther = true;
  }
  if (known) return 'known';
  return sameTypeOther ? 'changed' : 'unknown';
}

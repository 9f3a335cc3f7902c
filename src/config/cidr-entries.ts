import { isIP } from 'node:net';

// Address allow-lists in settings (storage.http.allowed_private_cidrs, storage.ftp.allowed_private_cidrs).

/** Checks allow-list entries at start-up (settings schema): why one is malformed, thrown. */
export function checkCidrEntries(items: readonly string[]): void {
  items.forEach((entry, i) => {
    if (!parseCidr(entry)) throw new Error(`entry ${i} ("${entry}") is not an address or CIDR block such as 10.1.0.0/16 or fd00::/8`);
  });
}

export function parseCidr(entry: string): { network: string; prefix: number; type: 'ipv4' | 'ipv6' } | undefined {
  const [network, prefixText, extra] = entry.trim().split('/');
  if (extra !== undefined) return undefined;
  const version = isIP(network);
  if (!version) return undefined;
  const max = version === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (!/^\d+$/.test(prefixText ?? String(max)) || prefix > max) return undefined;
  return { network, prefix, type: version === 4 ? 'ipv4' : 'ipv6' };
}

import { BlockList, isIP, isIPv4, LookupFunction } from 'node:net';
import { lookup as dnsLookup, LookupAddress } from 'node:dns';
import { redactUrl } from '../../common/redact';
import { parseCidr } from '../../config/cidr-entries';

// Which network addresses a task's URLs may make tesp connect to. Loopback, link-local (cloud metadata at
// 169.254.169.254), private, shared, multicast and reserved ranges are refused unless the operator allows them, so
// a task cannot use tesp to reach services that only trust their own network. Names are checked after resolution
// and the connection is made to the address that was checked (lookup()), so a second resolution cannot rebind.

export interface AddressPolicySettings {
  allow_private_addresses: boolean;
  /** CIDR blocks (or single addresses) allowed although private, e.g. a storage server on the local network. */
  allowed_private_cidrs: readonly string[];
}

interface Range {
  cidr: string;
  what: string;
}

const IPV4_RANGES: readonly Range[] = [
  { cidr: '0.0.0.0/8', what: '"this network"' },
  { cidr: '10.0.0.0/8', what: 'private' },
  { cidr: '100.64.0.0/10', what: 'shared (carrier-grade NAT)' },
  { cidr: '127.0.0.0/8', what: 'loopback' },
  { cidr: '169.254.0.0/16', what: 'link-local (cloud metadata)' },
  { cidr: '172.16.0.0/12', what: 'private' },
  { cidr: '192.0.0.0/24', what: 'IETF protocol assignments' },
  { cidr: '192.168.0.0/16', what: 'private' },
  { cidr: '198.18.0.0/15', what: 'benchmarking' },
  { cidr: '224.0.0.0/4', what: 'multicast' },
  { cidr: '240.0.0.0/4', what: 'reserved or broadcast' },
];

const IPV6_RANGES: readonly Range[] = [
  { cidr: '::/128', what: 'unspecified' },
  { cidr: '::1/128', what: 'loopback' },
  { cidr: 'fc00::/7', what: 'unique local (private)' },
  { cidr: 'fe80::/10', what: 'link-local' },
  { cidr: 'fec0::/10', what: 'site-local (private)' },
  { cidr: 'ff00::/8', what: 'multicast' },
];

const REFUSED = [...IPV4_RANGES.map((r) => ({ ...r, type: 'ipv4' as const })), ...IPV6_RANGES.map((r) => ({ ...r, type: 'ipv6' as const }))].map((range) => {
  const list = new BlockList();
  const [network, prefix] = range.cidr.split('/');
  list.addSubnet(network, Number(prefix), range.type);
  return { ...range, list };
});

/** Thrown (through the socket) when a name resolves to a refused address; transfers report it as a policy refusal. */
export class PrivateAddressRefused extends Error {
  override readonly name = 'PrivateAddressRefused';
}

export class AddressPolicy {
  private readonly allowed = new BlockList();

  /** `section` names the settings in messages, e.g. "storage.http". */
  constructor(
    private readonly settings: AddressPolicySettings,
    private readonly section: string,
    private readonly resolve: typeof dnsLookup = dnsLookup,
  ) {
    for (const entry of settings.allowed_private_cidrs) {
      const block = parseCidr(entry);
      if (!block) throw new Error(`${section}.allowed_private_cidrs: "${entry}" is not an address or CIDR block such as 10.1.0.0/16 or fd00::/8`);
      this.allowed.addSubnet(block.network, block.prefix, block.type);
    }
  }

  /** Why tesp must not connect to this address, or undefined; a name (not an IP literal) is not judged here. */
  refusal(address: string): string | undefined {
    const range = this.refusedRange(address);
    return range && `${range.ip} is a ${range.what}${this.advice()}`;
  }

  private advice(): string {
    return `; tesp does not connect to loopback, link-local, private or metadata addresses for a task unless ${this.section}.allow_private_addresses is true or ${this.section}.allowed_private_cidrs lists it`;
  }

  /** The refused range an address lies in, described ("loopback address (127.0.0.0/8)"), or undefined. */
  private refusedRange(address: string): { ip: string; what: string } | undefined {
    if (this.settings.allow_private_addresses) return undefined;
    const ip = address.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
    const type = isIP(ip) === 4 ? 'ipv4' : isIP(ip) === 6 ? 'ipv6' : undefined;
    if (!type) return undefined;
    if (this.allowed.check(ip, type)) return undefined;
    const embedded = type === 'ipv6' ? embeddedIpv4(ip) : undefined;
    if (embedded && this.allowed.check(embedded, 'ipv4')) return undefined;
    const native = REFUSED.find((range) => range.list.check(ip, type));
    const viaIpv4 = native || embedded === undefined ? undefined : REFUSED.find((range) => range.type === 'ipv4' && range.list.check(embedded, 'ipv4'));
    const hit = native ?? viaIpv4;
    if (!hit) return undefined;
    return { ip, what: `${hit.what} address (${hit.cidr}${viaIpv4 ? `, as ${embedded}` : ''})` };
  }

  /** Why a task's URL is refused when it is created: its host is a refused IP literal (names are checked at connect). */
  urlRefusal(url: string): string | undefined {
    let host: string;
    try {
      host = new URL(url).hostname;
    } catch {
      return undefined; // the registry names a malformed URL
    }
    const refused = this.refusal(host);
    return refused && `${redactUrl(url)}: ${refused}`;
  }

  /** Resolves a name to one address that the policy allows (every address it resolves to must be allowed). */
  async resolveChecked(hostname: string): Promise<string> {
    const literal = hostname.replace(/^\[|\]$/g, '');
    if (isIP(literal)) {
      const why = this.refusal(literal);
      if (why) throw new PrivateAddressRefused(why);
      return literal;
    }
    const addresses = await new Promise<LookupAddress[]>((resolve, reject) => this.resolve(hostname, { all: true }, (err, found) => (err ? reject(err) : resolve(found))));
    this.checkResolved(hostname, addresses);
    return addresses[0].address;
  }

  /**
   * A `lookup` for net/tls.connect (and undici's connect options): resolves, refuses the name when any of its
   * addresses is refused, and hands the connection exactly the addresses it checked.
   */
  readonly lookup: LookupFunction = (hostname, options, callback) => {
    this.resolve(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '', 0);
      try {
        this.checkResolved(hostname, addresses);
      } catch (refused) {
        return callback(refused as NodeJS.ErrnoException, '', 0);
      }
      if (options.all) return (callback as unknown as (e: null, all: LookupAddress[]) => void)(null, addresses);
      callback(null, addresses[0].address, addresses[0].family);
    });
  };

  private checkResolved(hostname: string, addresses: readonly LookupAddress[]): void {
    if (addresses.length === 0) throw new PrivateAddressRefused(`${hostname} resolves to no address`);
    for (const { address } of addresses) {
      const range = this.refusedRange(address);
      if (range) throw new PrivateAddressRefused(`${hostname} resolves to ${range.ip}, a ${range.what}${this.advice()}`);
    }
  }
}

/**
 * The IPv4 address inside an IPv6 one that reaches it: IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d),
 * NAT64 (64:ff9b::a.b.c.d) and 6to4 (2002:AABB:CCDD::).
 */
function embeddedIpv4(ip: string): string | undefined {
  const words = ipv6Words(ip);
  if (!words) return undefined;
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  const zeros = (from: number, to: number) => words.slice(from, to).every((w) => w === 0);
  if (zeros(0, 5) && (words[5] === 0xffff || words[5] === 0)) return v4(words[6], words[7]);
  if (words[0] === 0x64 && words[1] === 0xff9b && zeros(2, 6)) return v4(words[6], words[7]);
  if (words[0] === 0x2002) return v4(words[1], words[2]);
  return undefined;
}

/** The eight 16-bit words of an IPv6 address (with or without a trailing dotted quad). */
function ipv6Words(ip: string): number[] | undefined {
  let text = ip.toLowerCase();
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (quad) {
    if (!isIPv4(quad[1])) return undefined;
    const [a, b, c, d] = quad[1].split('.').map(Number);
    text = text.slice(0, -quad[1].length) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::');
  const part = (s: string | undefined) => (s ? s.split(':').map((w) => parseInt(w, 16)) : []);
  const front = part(head);
  const back = part(tail);
  const words = tail === undefined ? front : [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back];
  return words.length === 8 && words.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffff) ? words : undefined;
}

import type { LookupAddress } from 'node:dns';
import { checkCidrEntries } from '../../config/cidr-entries';
import { AddressPolicy, PrivateAddressRefused } from './address-policy';

const strict = new AddressPolicy({ allow_private_addresses: false, allowed_private_cidrs: [] }, 'storage.http');

describe('address policy', () => {
  it.each([
    '127.0.0.1', '127.9.8.7', '10.0.0.1', '172.16.0.1', '172.31.255.254', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0',
    '224.0.0.1', '255.255.255.255', '::1', '::', 'fc00::1', 'fd12:3456::1', 'fe80::1', 'fe80::1%eth0', 'ff02::1',
    '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:10.0.0.1', '::ffff:a9fe:a9fe', '::127.0.0.1', '64:ff9b::10.0.0.1', '2002:c0a8:0101::1', '[::1]',
  ])('refuses %s, naming the rule and the setting', (address) => {
    const why = strict.refusal(address);
    expect(why).toMatch(/address \([0-9a-f.:]+\/\d+/);
    expect(why).toContain('storage.http.allow_private_addresses');
  });

  it.each(['8.8.8.8', '1.1.1.1', '172.32.0.1', '172.15.255.255', '100.128.0.1', '2606:4700::1111', '::ffff:8.8.8.8', '2002:0808:0808::1', 'example.org'])(
    'lets %s through',
    (address) => {
      expect(strict.refusal(address)).toBeUndefined();
    },
  );

  it('says loopback for ::1, not its IPv4-compatible reading', () => {
    expect(strict.refusal('::1')).toMatch(/^::1 is a loopback address \(::1\/128\)/);
    expect(strict.refusal('::ffff:127.0.0.1')).toMatch(/loopback address \(127\.0\.0\.0\/8/);
  });

  it('allows everything when allow_private_addresses is set, and only the listed blocks with allowed_private_cidrs', () => {
    expect(new AddressPolicy({ allow_private_addresses: true, allowed_private_cidrs: [] }, 's').refusal('10.0.0.1')).toBeUndefined();
    const narrow = new AddressPolicy({ allow_private_addresses: false, allowed_private_cidrs: ['127.0.0.2', '10.1.0.0/16', 'fd00::/8'] }, 's');
    expect(narrow.refusal('127.0.0.2')).toBeUndefined();
    expect(narrow.refusal('::ffff:127.0.0.2')).toBeUndefined();
    expect(narrow.refusal('10.1.200.3')).toBeUndefined();
    expect(narrow.refusal('fd00::5')).toBeUndefined();
    expect(narrow.refusal('127.0.0.1')).toBeDefined();
    expect(narrow.refusal('10.2.0.1')).toBeDefined();
  });

  it('refuses malformed allow-list entries', () => {
    for (const bad of ['10.0.0.0/33', 'fd00::/129', 'example.org', '10.0.0.0/8/1', '10.0.0/8', '10.0.0.0/x']) {
      expect(() => checkCidrEntries([bad])).toThrow(/is not an address or CIDR block/);
    }
    expect(() => checkCidrEntries(['10.0.0.0/8', '::1', '127.0.0.2/32'])).not.toThrow();
  });

  describe('name resolution', () => {
    const resolvingTo = (...addresses: string[]) =>
      new AddressPolicy({ allow_private_addresses: false, allowed_private_cidrs: [] }, 'storage.ftp', ((_name: string, _options: unknown, callback: (err: null, all: LookupAddress[]) => void) =>
        callback(null, addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })))) as never);

    it('refuses a name when any of its addresses is refused', async () => {
      await expect(resolvingTo('93.184.216.34', '10.0.0.7').resolveChecked('mixed.example')).rejects.toThrow(PrivateAddressRefused);
      await expect(resolvingTo('10.0.0.7').resolveChecked('inside.example')).rejects.toThrow(/^inside\.example resolves to 10\.0\.0\.7, a private address .*storage\.ftp\.allow_private_addresses/);
    });

    it('hands the connection the address it checked', async () => {
      await expect(resolvingTo('93.184.216.34').resolveChecked('public.example')).resolves.toBe('93.184.216.34');
      const policy = resolvingTo('93.184.216.34', '2606:2800:220:1::1');
      const one = await new Promise<unknown[]>((resolve) => policy.lookup('public.example', { family: 0 }, (...args) => resolve(args)));
      expect(one).toEqual([null, '93.184.216.34', 4]);
      const all = await new Promise<unknown[]>((resolve) => policy.lookup('public.example', { all: true } as never, (...args) => resolve(args)));
      expect(all[1]).toEqual([{ address: '93.184.216.34', family: 4 }, { address: '2606:2800:220:1::1', family: 6 }]);
      const refused = await new Promise<unknown[]>((resolve) => resolvingTo('169.254.169.254').lookup('metadata.example', {}, (...args) => resolve(args)));
      expect(refused[0]).toBeInstanceOf(PrivateAddressRefused);
    });
  });
});

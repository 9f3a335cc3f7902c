import { createHmac } from 'node:crypto';
import { verifyHostKey } from './known-hosts';

const blob = (type: string, body: string) => {
  const t = Buffer.from(type);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(t.length);
  return Buffer.concat([length, t, Buffer.from(body)]);
};
const ours = blob('ssh-ed25519', 'our key');
const other = blob('ssh-ed25519', 'another key');
const line = (patterns: string, key: Buffer, marker = '') => `${marker}${marker ? ' ' : ''}${patterns} ssh-ed25519 ${key.toString('base64')}`;

describe('verifyHostKey', () => {
  it('knows plain, [host]:port, wildcard and hashed names, and honours negations', () => {
    expect(verifyHostKey(line('a.org,b.org', ours), 'b.org', 22, ours)).toBe('known');
    expect(verifyHostKey(line('b.org', ours), 'b.org', 2222, ours)).toBe('unknown');
    expect(verifyHostKey(line('[b.org]:2222', ours), 'b.org', 2222, ours)).toBe('known');
    expect(verifyHostKey(line('*.org,!bad.org', ours), 'good.org', 22, ours)).toBe('known');
    expect(verifyHostKey(line('*.org,!bad.org', ours), 'bad.org', 22, ours)).toBe('unknown');
    const salt = Buffer.from('0123456789abcdef0123');
    const hashed = `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update('[b.org]:2222').digest('base64')}`;
    expect(verifyHostKey(line(hashed, ours), 'B.org', 2222, ours)).toBe('known');
    expect(verifyHostKey(line(hashed, ours), 'b.org', 22, ours)).toBe('unknown');
  });

  it('tells a changed key (same type) and a revoked one from an unknown host', () => {
    expect(verifyHostKey(line('b.org', other), 'b.org', 22, ours)).toBe('changed');
    expect(verifyHostKey(`b.org ssh-rsa ${other.toString('base64')}`, 'b.org', 22, ours)).toBe('unknown');
    expect(verifyHostKey([line('b.org', ours), line('*', ours, '@revoked')].join('\n'), 'b.org', 22, ours)).toBe('revoked');
    expect(verifyHostKey('# only a comment\n\n', 'b.org', 22, ours)).toBe('unknown');
  });
});

import { redactText, redactUrl } from './redact';

describe('redaction', () => {
  it('hides userinfo and credential query parameters', () => {
    expect(redactUrl('https://user:pa55@example.org/a?b=1')).toBe('https://***@example.org/a?b=1');
    expect(redactUrl('ftp://tes:tespass@127.0.0.1:2121/data/x')).not.toContain('tespass');
    expect(redactUrl('https://bucket.example.org/k?X-Amz-Signature=abc&x=1')).toBe('https://bucket.example.org/k?X-Amz-Signature=***&x=1');
  });

  it('returns URLs and paths without secrets exactly as given', () => {
    for (const raw of ['http://127.0.0.1:8080', 'file:///data/a b', '/plain/path', 's3://bucket/key', 'not a url']) {
      expect(redactUrl(raw)).toBe(raw);
    }
  });

  it('hides userinfo inside free text', () => {
    expect(redactText('connect to ftp://bob:hunter2@host/x failed')).toBe('connect to ftp://***@host/x failed');
  });
});

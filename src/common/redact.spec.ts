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

  it('hides the key of tesp staging URLs and a broker password', () => {
    expect(redactUrl('http://tes.example.org/tesp/relay/t1/2/KEYabc_-/inputs/0')).toBe('http://tes.example.org/tesp/relay/t1/2/***/inputs/0');
    expect(redactText('GET http://h/tesp/relay/t1/2/KEYabc/files?path=x answered 500; again http://h/tesp/relay/t2/1/K2/files')).toBe(
      'GET http://h/tesp/relay/t1/2/***/files?path=x answered 500; again http://h/tesp/relay/t2/1/***/files',
    );
    expect(redactUrl('amqp://tes:pw@rabbit:5672/?manager=x')).toBe('amqp://***@rabbit:5672/?manager=x');
  });

  it('hides userinfo inside free text', () => {
    expect(redactText('connect to ftp://bob:hunter2@host/x failed')).toBe('connect to ftp://***@host/x failed');
  });

  it('hides Authorization credentials quoted in free text', () => {
    expect(redactText('request with Bearer eyJhbGciOi.eyJzdWIi.c2ln failed')).toBe('request with Bearer *** failed');
    expect(redactText('header "basic YWxpY2U6d29uZGVy" refused')).toBe('header "basic ***" refused');
    expect(redactText('Basic authentication failed')).toBe('Basic authentication failed');
  });

  describe.each([
    'X-Goog-Signature', 'X-Goog-Credential', 'x-goog-security-token', 'X-Amz-Signature', 'X-Amz-Credential', 'X-Amz-Security-Token',
    'client_secret', 'api-key', 'api_key', 'apikey', 'X-Api-Key', 'private_token', 'access_token', 'refresh_token', 'id_token',
    'token', 'sig', 'signature', 'password', 'passwd', 'secret', 'key',
  ])('the query parameter %s', (name) => {
    const secret = 'S3cr3t-value_1';
    for (const shown of [name, name.toUpperCase(), name.toLowerCase()]) {
      it(`is hidden in a URL and in free text (${shown})`, () => {
        const url = `https://store.example.org/obj?x=1&${shown}=${secret}&y=2`;
        expect(redactUrl(url)).toBe(`https://store.example.org/obj?x=1&${shown}=***&y=2`);
        expect(redactText(`GET ${url} answered HTTP 403`)).toBe(`GET https://store.example.org/obj?x=1&${shown}=***&y=2 answered HTTP 403`);
      });
    }
  });

  it('keeps harmless parameters whose names merely contain a secret name', () => {
    for (const raw of ['https://h/x?keyword=a&monkey=b&tokens=c&signature_version=4', 'https://h/x?region=eu&sort=key']) {
      expect(redactUrl(raw)).toBe(raw);
      expect(redactText(raw)).toBe(raw);
    }
  });

  it('hides userinfo of any scheme, with or without a password', () => {
    for (const raw of ['https://alice:pw9@h/x', 'sftp://bob@h/x', 's3://AKIA:sk9@bucket/x', 'irods://u:p@zone/x']) {
      expect(redactUrl(raw)).not.toMatch(/pw9|bob|sk9|AKIA|u:p/);
      expect(redactText(`failed: ${raw}`)).not.toMatch(/pw9|bob|sk9|AKIA|u:p@/);
    }
  });

  it('redacts a URL that does not parse as well as it can', () => {
    expect(redactUrl('http://u:pw@[bad/x?token=abc&sig=def')).toBe('http://***@[bad/x?token=***&sig=***');
  });
});

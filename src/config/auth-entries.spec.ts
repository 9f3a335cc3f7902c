import { checkAuthModes, checkIssuers, htpasswdFileLines, parseHtpasswdEntries } from './auth-entries';

const HASH = '$2y$05$' + 'a'.repeat(53);

describe('auth settings entries', () => {
  it('reads htpasswd bcrypt lines, $2y$ as $2b$', () => {
    expect(parseHtpasswdEntries([`alice:${HASH}`])).toEqual([{ user: 'alice', hash: HASH.replace('$2y$', '$2b$') }]);
  });

  it('names a malformed entry by its index, never showing its content', () => {
    for (const bad of ['alice:plain-s3cret', 'alice', `:${HASH}`, `alice:$1$md5$s3cret`, `alice:${HASH}x`]) {
      let message = '';
      try {
        parseHtpasswdEntries([`bob:${HASH}`, bad]);
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toMatch(/^entry 1 is not name:\$2y\$\.\.\./);
      expect(message).not.toContain('s3cret');
    }
    expect(() => parseHtpasswdEntries([`bob:${HASH}`, `bob:${HASH}`])).toThrow('entry 1: the user "bob" is given twice');
  });

  it('skips blank lines and comments of an htpasswd file, keeping line numbers', () => {
    expect(htpasswdFileLines(`# users\n\nalice:${HASH}\r\n`)).toEqual({ lines: [`alice:${HASH}`], lineNumbers: [3] });
  });

  it('refuses none beside other modes, unknown modes and repeats', () => {
    expect(() => checkAuthModes(['basic', 'oidc'])).not.toThrow();
    expect(() => checkAuthModes(['none', 'basic'])).toThrow('"none" cannot be combined');
    expect(() => checkAuthModes(['ldap'])).toThrow('entry 0 ("ldap") is not one of none, basic, oidc');
    expect(() => checkAuthModes(['basic', 'basic'])).toThrow('given twice');
    expect(() => checkAuthModes([])).toThrow('at least one mode');
  });

  it('accepts https issuers, and http only on loopback', () => {
    expect(() => checkIssuers(['https://idp.example.org/realms/x', 'http://127.0.0.1:8080', 'http://localhost:9000'])).not.toThrow();
    expect(() => checkIssuers(['http://idp.example.org'])).toThrow('entry 0 ("http://idp.example.org") must be an https URL');
    expect(() => checkIssuers(['https://u:p@idp.example.org'])).toThrow('without credentials');
    expect(() => checkIssuers(['not a url'])).toThrow('is not a URL');
  });
});

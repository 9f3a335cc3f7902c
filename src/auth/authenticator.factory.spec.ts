import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createLogger } from '../common/logger';
import { loadSettings } from '../config/settings.loader';
import { createAuthenticators } from './authenticator.factory';

const HASH = '$2y$04$' + 'a'.repeat(53);

describe('createAuthenticators', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tesp-auth-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const build = (overrides: Record<string, unknown>) => () => createAuthenticators(loadSettings({ env: {}, overrides }), createLogger('silent'));

  it('builds one authenticator per mode, in order', () => {
    expect(build({})().map((a) => a.scheme)).toEqual(['none']);
    const both = build({ 'auth.modes': ['oidc', 'basic'], 'auth.basic.users': [`alice:${HASH}`], 'auth.oidc.issuers': ['https://idp.example.org'], 'auth.oidc.audience': 'tesp' })();
    expect(both.map((a) => a.scheme)).toEqual(['bearer', 'basic']);
  });

  it('reads auth.basic.users_file, naming a malformed line by its number and never its content', () => {
    const file = path.join(dir, 'htpasswd');
    writeFileSync(file, `# tesp users\nalice:${HASH}\n\nbob:pl41n-s3cret\n`);
    expect(build({ 'auth.modes': ['basic'], 'auth.basic.users_file': file })).toThrow(`auth.basic.users_file (${file}) line 4 is not name:$2y$...`);
    writeFileSync(file, `alice:${HASH}\n`);
    expect(build({ 'auth.modes': ['basic'], 'auth.basic.users_file': file, 'auth.basic.users': [`alice:${HASH}`] })).toThrow('the user "alice" is given twice');
    expect(build({ 'auth.modes': ['basic'], 'auth.basic.users_file': path.join(dir, 'missing') })).toThrow(/auth.basic.users_file: cannot read .*missing \(ENOENT\)/);
  });

  it('refuses modes without what they need', () => {
    expect(build({ 'auth.modes': ['basic'] })).toThrow('neither auth.basic.users nor auth.basic.users_file holds a user');
    expect(build({ 'auth.modes': ['oidc'], 'auth.oidc.audience': 'tesp' })).toThrow('auth.oidc.issuers lists no issuer');
    expect(build({ 'auth.modes': ['oidc'], 'auth.oidc.issuers': ['https://idp.example.org'] })).toThrow('auth.oidc.audience is empty');
    const oidc = { 'auth.modes': ['oidc'], 'auth.oidc.issuers': ['https://idp.example.org'], 'auth.oidc.audience': 'tesp' };
    expect(build({ ...oidc, 'auth.oidc.introspection_client_id': 'tesp' })).toThrow('introspection needs both');
    const secretFile = path.join(dir, 'secret');
    writeFileSync(secretFile, '\n');
    expect(build({ ...oidc, 'auth.oidc.introspection_client_id': 'tesp', 'auth.oidc.introspection_client_secret_file': secretFile })).toThrow(`${secretFile} is empty`);
  });
});

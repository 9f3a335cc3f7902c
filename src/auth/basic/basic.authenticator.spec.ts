import * as bcrypt from 'bcryptjs';
import { parseHtpasswdEntries } from '../../config/auth-entries';
import { ErrorCode } from '../../domain/domain-error';
import { AdminRule } from '../admin-rule';
import { BasicAuthenticator } from './basic.authenticator';

const header = (credentials: string) => ({ authorization: `Basic ${Buffer.from(credentials).toString('base64')}` });

describe('BasicAuthenticator', () => {
  // $2y$ as Apache's htpasswd writes it: the same algorithm as bcryptjs's $2b$.
  const entries = parseHtpasswdEntries([
    `alice:${bcrypt.hashSync('wonderland', 4).replace(/^\$2b\$/, '$2y$')}`,
    `root:${bcrypt.hashSync('t00r', 4)}`,
  ]);
  const admins = new AdminRule({ users: ['root'], groups: [], claim: '', claim_value: '' });
  let now = 0;
  const authenticator = new BasicAuthenticator(entries, admins, 60_000, () => now);

  it('answers a user for the right password, admin as settings say', async () => {
    expect(await authenticator.authenticate(header('alice:wonderland'))).toEqual({ name: 'alice', admin: false, groups: [], via: 'basic' });
    expect((await authenticator.authenticate(header('root:t00r')))?.admin).toBe(true);
  });

  it('leaves other schemes and absent headers to other authenticators', async () => {
    expect(await authenticator.authenticate({ authorization: undefined })).toBeUndefined();
    expect(await authenticator.authenticate({ authorization: 'Bearer x' })).toBeUndefined();
  });

  it('refuses wrong passwords and unknown users alike', async () => {
    for (const credentials of ['alice:wrong', 'nobody:wonderland']) {
      await expect(authenticator.authenticate(header(credentials))).rejects.toMatchObject({ code: ErrorCode.Unauthenticated, message: 'the user name or password is not valid' });
    }
  });

  it('remembers a verified header until the cache lifetime ends', async () => {
    now = 0;
    const first = await authenticator.authenticate(header('alice:wonderland'));
    now = 59_000;
    expect(await authenticator.authenticate(header('alice:wonderland'))).toBe(first);
    now = 61_000;
    const later = await authenticator.authenticate(header('alice:wonderland'));
    expect(later).not.toBe(first);
    expect(later).toEqual(first);
  });
});

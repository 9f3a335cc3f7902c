import { AdminRule } from './admin-rule';

describe('AdminRule', () => {
  it('makes admins of the listed users, members of the listed groups, and holders of the claim value', () => {
    const rule = new AdminRule({ users: ['root', 'https://idp.example#42'], groups: ['tesp-admins'], claim: 'roles', claim_value: 'tesp-admin' });
    expect(rule.isAdmin('root', [])).toBe(true);
    expect(rule.isAdmin('https://idp.example#42', [])).toBe(true);
    expect(rule.isAdmin('alice', ['lab', 'tesp-admins'])).toBe(true);
    expect(rule.isAdmin('alice', [], { roles: ['reader', 'tesp-admin'] })).toBe(true);
    expect(rule.isAdmin('alice', [], { roles: 'tesp-admin' })).toBe(true);
    expect(rule.isAdmin('alice', ['lab'], { roles: ['reader'] })).toBe(false);
  });

  it('with a claim and no value, needs the claim to be true', () => {
    const rule = new AdminRule({ users: [], groups: [], claim: 'tesp_admin', claim_value: '' });
    expect(rule.isAdmin('a', [], { tesp_admin: true })).toBe(true);
    expect(rule.isAdmin('a', [], { tesp_admin: 'yes' })).toBe(false);
    expect(rule.isAdmin('a', [])).toBe(false);
  });
});

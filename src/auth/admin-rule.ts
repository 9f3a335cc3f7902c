import type { Settings } from '../config/settings.schema';

/** Who is an admin (sees and cancels every task): auth.admin users, groups, or a claim with a given value. */
export class AdminRule {
  private readonly users: ReadonlySet<string>;
  private readonly groups: ReadonlySet<string>;

  constructor(private readonly settings: Settings['auth']['admin']) {
    this.users = new Set(settings.users);
    this.groups = new Set(settings.groups);
  }

  isAdmin(name: string, groups: readonly string[], claims: Readonly<Record<string, unknown>> = {}): boolean {
    if (this.users.has(name) || groups.some((group) => this.groups.has(group))) return true;
    const { claim, claim_value: value } = this.settings;
    if (!claim) return false;
    const held = claims[claim];
    if (Array.isArray(held)) return held.includes(value);
    return value === '' ? held === true : held === value || (typeof held === 'boolean' && String(held) === value);
  }
}

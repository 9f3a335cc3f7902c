// Who calls the API, and which tasks that caller may see. The auth layer makes a Principal for every request (the
// anonymous one when authentication is off); the task service turns it into a TaskScope that the store's read
// methods take by type, so a query can never forget the owner.

export interface Principal {
  /** The owner name recorded on the caller's tasks: a Basic user name, or `<issuer>#<sub>` for OpenID Connect. */
  readonly name: string;
  /** Admins see and cancel every task. */
  readonly admin: boolean;
  readonly groups: readonly string[];
  /** How the caller was authenticated. */
  readonly via: 'none' | 'basic' | 'oidc';
}

/** Authentication off: one caller who owns nothing and sees everything. */
export const ANONYMOUS: Principal = Object.freeze({ name: '', admin: true, groups: Object.freeze([]), via: 'none' as const });

/** Every task (admins, and everyone while authentication is off), or only the tasks of one owner. */
export type TaskScope = { readonly all: true } | { readonly all: false; readonly owner: string };

export function scopeOf(principal: Principal): TaskScope {
  return principal.admin ? { all: true } : { all: false, owner: principal.name };
}

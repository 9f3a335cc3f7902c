import { ANONYMOUS, Principal } from '../domain/principal';
import type { Authenticator } from './authenticator';

/** auth.modes [none]: every caller is the anonymous one, whatever it sends. */
export class NoneAuthenticator implements Authenticator {
  readonly scheme = 'none' as const;

  async authenticate(): Promise<Principal> {
    return ANONYMOUS;
  }
}

import { CanActivate, ExecutionContext, Inject, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyReply } from 'fastify';
import { LOGGER, Logger } from '../common/logger';
import { DomainError, ErrorCode } from '../domain/domain-error';
import { ANONYMOUS, Principal } from '../domain/principal';
import { AUTHENTICATORS, Authenticator, splitAuthorization } from './authenticator';
import type { AuthenticatedRequest } from './current-principal.decorator';
import { PUBLIC_ROUTE } from './public-route.decorator';
import { RateLimiter } from './rate-limiter';

/** Who calls a public route while authentication is on: nobody in particular, and never an admin. */
const PUBLIC_CALLER: Principal = Object.freeze({ name: '', admin: false, groups: Object.freeze([]), via: 'none' as const });

/**
 * Registered once for the whole app (APP_GUARD): every route but a @PublicRoute() needs a principal, which the
 * authenticators of auth.modes establish from the Authorization header. Refusals are DomainErrors the one filter
 * answers: 401 with WWW-Authenticate, 403, or 429 with Retry-After.
 */
@Injectable()
export class AuthGuard implements CanActivate {
  private readonly open: boolean;
  private readonly challenge: string;
  private readonly accepted: string;

  constructor(
    private readonly reflector: Reflector,
    @Inject(AUTHENTICATORS) private readonly authenticators: readonly Authenticator[],
    private readonly limiter: RateLimiter,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {
    this.open = authenticators.every((authenticator) => authenticator.scheme === 'none');
    this.challenge = authenticators.flatMap((authenticator) => authenticator.challenge ?? []).join(', ');
    this.accepted = authenticators.flatMap((authenticator) => ({ none: [], basic: ['Basic'], bearer: ['Bearer'] })[authenticator.scheme]).join(' or ');
  }

  canActivate(context: ExecutionContext): boolean | Promise<boolean> {
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const isPublic = this.reflector.getAllAndOverride<boolean>(PUBLIC_ROUTE, [context.getHandler(), context.getClass()]);
    if (this.open) {
      // auth.modes [none]: everyone is the anonymous caller, known without a promise (this is every request's path).
      if (!isPublic) this.limiter.take(`address:${request.ip}`);
      request.principal = ANONYMOUS;
      return true;
    }
    return this.establish(context, request, isPublic);
  }

  private async establish(context: ExecutionContext, request: AuthenticatedRequest, isPublic: boolean | undefined): Promise<boolean> {
    // Public routes (service-info, the staging relay with its own keys) take no credentials and no rate limit.
    if (isPublic) {
      request.principal = PUBLIC_CALLER;
      return true;
    }
    let principal: Principal;
    try {
      principal = await this.authenticate(request.headers.authorization);
    } catch (err) {
      if (err instanceof DomainError && err.code === ErrorCode.Unauthenticated) {
        this.logger.debug({ method: request.method, reason: err.message }, 'authentication refused');
        void context.switchToHttp().getResponse<FastifyReply>().header('www-authenticate', this.challenge);
        // Failed attempts count against the caller's address, so passwords cannot be guessed at full speed.
        this.limiter.take(`address:${request.ip}`);
      }
      throw err;
    }
    this.limiter.take(principal.via === 'none' ? `address:${request.ip}` : `user:${principal.name}`);
    request.principal = principal;
    return true;
  }

  private async authenticate(authorization: string | undefined): Promise<Principal> {
    for (const authenticator of this.authenticators) {
      const principal = await authenticator.authenticate({ authorization });
      if (principal) return principal;
    }
    if (authorization === undefined) throw new DomainError(ErrorCode.Unauthenticated, `this route needs a user: send an Authorization header (${this.accepted})`);
    const { scheme } = splitAuthorization(authorization);
    throw new DomainError(ErrorCode.Unauthenticated, scheme === '' ? 'the Authorization header is empty' : `the Authorization scheme is not accepted here; use ${this.accepted}`);
  }
}

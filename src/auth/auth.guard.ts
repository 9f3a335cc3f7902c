import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { ANONYMOUS } from '../domain/principal';
import type { AuthenticatedRequest } from './current-principal.decorator';
import { PUBLIC_ROUTE } from './public-route.decorator';

/** Registered once for the whole app (APP_GUARD): every route but a @PublicRoute() needs a principal. */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(private readonly reflector: Reflector) {}

  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const isPublic = this.reflector.getAllAndOverride<boolean>(PUBLIC_ROUTE, [context.getHandler(), context.getClass()]);
    // Authentication is off for now: every caller is the anonymous one (the Authenticator port replaces this).
    void isPublic;
    request.principal = ANONYMOUS;
    return true;
  }
}

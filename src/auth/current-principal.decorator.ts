import { createParamDecorator, ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import type { Principal } from '../domain/principal';

export type AuthenticatedRequest = FastifyRequest & { principal?: Principal };

/**
 * The caller the AuthGuard established for this request. Fails closed: a route reached without the guard having
 * set a principal is a programming error, never an anonymous admin.
 */
export const CurrentPrincipal = createParamDecorator((_data: unknown, context: ExecutionContext): Principal => principalOf(context.switchToHttp().getRequest<AuthenticatedRequest>()));

/** The same, for a route that takes the whole request (create and get, where each parameter Nest resolves costs). */
export function principalOf(request: AuthenticatedRequest): Principal {
  if (!request.principal) throw new Error('no principal on the request: the AuthGuard did not run');
  return request.principal;
}

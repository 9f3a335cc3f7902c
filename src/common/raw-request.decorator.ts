import { createParamDecorator, ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import type { IncomingMessage } from 'node:http';

/**
 * The raw Node request, its body unread, for routes that stream an upload (a PUT or POST of a file, multipart or
 * not) instead of taking JSON: `upload(@RawRequest() req: IncomingMessage)`, then pipe `req` where it goes.
 * Fastify leaves every body but application/json unread (api-docs/request-body-parsers.ts), so nothing is
 * buffered and server.body_limit_mb does not apply; the route enforces its own limit. To stream an answer, return
 * a StreamableFile, or take `@Res() reply: FastifyReply` and `reply.send(stream)`.
 */
export const RawRequest = createParamDecorator((_data: unknown, context: ExecutionContext): IncomingMessage =>
  context.switchToHttp().getRequest<FastifyRequest>().raw,
);

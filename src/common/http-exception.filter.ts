import { ArgumentsHost, Catch, ExceptionFilter, HttpException, HttpStatus, Inject } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { randomUUID } from 'node:crypto';
import { LOGGER, Logger } from './logger';
import { DomainError, ErrorCode } from '../domain/domain-error';
import { redactText } from './redact';

export interface ErrorBody {
  msg: string;
  status_code: number;
}

/** The one mapping from domain error codes to HTTP statuses. */
export function statusFor(code: ErrorCode): number {
  switch (code) {
    case ErrorCode.InvalidArgument:
    case ErrorCode.StorageDenied:
      return HttpStatus.BAD_REQUEST;
    case ErrorCode.NotFound:
      return HttpStatus.NOT_FOUND;
    case ErrorCode.Unauthenticated:
      return HttpStatus.UNAUTHORIZED;
    case ErrorCode.Forbidden:
      return HttpStatus.FORBIDDEN;
    case ErrorCode.TooManyRequests:
      return HttpStatus.TOO_MANY_REQUESTS;
    case ErrorCode.Conflict:
      return HttpStatus.CONFLICT;
    case ErrorCode.PayloadTooLarge:
      return HttpStatus.PAYLOAD_TOO_LARGE;
    case ErrorCode.UnsupportedMediaType:
      return HttpStatus.UNSUPPORTED_MEDIA_TYPE;
    case ErrorCode.Unavailable:
    case ErrorCode.Busy:
    case ErrorCode.StoreBroken:
      return HttpStatus.SERVICE_UNAVAILABLE;
    case ErrorCode.StoreFull:
      return HttpStatus.INSUFFICIENT_STORAGE;
    case ErrorCode.StorageFailed:
    case ErrorCode.ComputeFailed:
    case ErrorCode.Internal:
      return HttpStatus.INTERNAL_SERVER_ERROR;
  }
}

/**
 * Every error leaves as JSON {msg, status_code}; unexpected ones as 5xx with an id that is also logged.
 * Registered as APP_FILTER (by TasksModule), so it also answers Nest's 404 for unknown routes.
 */
@Catch()
export class HttpExceptionFilter implements ExceptionFilter {
  constructor(@Inject(LOGGER) private readonly logger: Logger) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const reply = http.getResponse<FastifyReply>();
    const req = http.getRequest<FastifyRequest>();
    // The client left before its answer (e.g. closed the connection in the middle of its body): nobody to answer,
    // and nothing went wrong here, so no error line (a client doing it on purpose would flood the log).
    if (reply.raw?.destroyed || req.raw?.socket?.destroyed) {
      this.logger.debug({ method: req.method, path: pathOf(req) }, 'client closed the connection before its answer');
      return;
    }
    const body = this.bodyFor(exception, req);
    // Retry-After comes with the error: a rate limit (the guard set WWW-Authenticate before it refused), or a bound
    // of this server's own (503 Busy).
    if (exception instanceof DomainError && exception.retryAfterMs !== undefined && (exception.code === ErrorCode.TooManyRequests || body.status_code >= 500)) {
      void reply.header('retry-after', String(Math.max(1, Math.ceil(exception.retryAfterMs / 1000))));
    }
    void reply.status(body.status_code).send(body);
  }

  private bodyFor(exception: unknown, req: FastifyRequest): ErrorBody {
    if (exception instanceof DomainError) {
      const status = statusFor(exception.code);
      // Messages below the controllers are written for clients; redacting again only guards against a slip.
      if (status < 500 || CLIENT_FACING_5XX.has(exception.code)) return { msg: redactText(exception.message), status_code: status };
      return this.serverError(exception, req, status);
    }
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      // Nest's own 404 for an unknown route: say which request, in the one error shape.
      if (status === 404) return { msg: `not found: ${req.method} ${pathOf(req)}`, status_code: 404 };
      // Fastify's own, before any route runs: the body is beyond its bodyLimit.
      if (status === 413) return { msg: 'request body is larger than server.body_limit_mb allows', status_code: 413 };
      if (status < 500) return { msg: redactText(exception.message), status_code: status };
      return this.serverError(exception, req, status);
    }
    return this.serverError(exception, req, HttpStatus.INTERNAL_SERVER_ERROR);
  }

  /** 5xx: the client gets only an error id; the log gets the details under the same id, with secrets removed. */
  private serverError(exception: unknown, req: FastifyRequest, status: number): ErrorBody {
    const errorId = randomUUID();
    const err = exception instanceof Error
      ? { message: redactText(exception.message), stack: exception.stack && redactText(exception.stack) }
      : { message: redactText(String(exception)) };
    this.logger.error({ errorId, status, method: req.method, path: pathOf(req), err }, 'request failed');
    const what = status === HttpStatus.SERVICE_UNAVAILABLE ? 'service unavailable' : 'internal error';
    return { msg: `${what} (id ${errorId})`, status_code: status };
  }
}

/**
 * 5xx whose message is written for the client and logged nowhere here: the store's own faults (the store logs each
 * once, not once per request) and Busy, a bound of this server's expected under load.
 */
const CLIENT_FACING_5XX: ReadonlySet<ErrorCode> = new Set([ErrorCode.StoreFull, ErrorCode.StoreBroken, ErrorCode.Busy]);

/** The request's path without its query (which may carry a page token or worse). */
function pathOf(req: FastifyRequest): string {
  const query = req.url.indexOf('?');
  return query === -1 ? req.url : req.url.slice(0, query);
}

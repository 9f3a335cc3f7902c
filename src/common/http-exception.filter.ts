import { ArgumentsHost, Catch, ExceptionFilter, HttpException, HttpStatus, Inject } from '@nestjs/common';
import type { Request, Response } from 'express';
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
    case ErrorCode.Forbidden:
      return HttpStatus.FORBIDDEN;
    case ErrorCode.Conflict:
      return HttpStatus.CONFLICT;
    case ErrorCode.PayloadTooLarge:
      return HttpStatus.PAYLOAD_TOO_LARGE;
    case ErrorCode.Unavailable:
      return HttpStatus.SERVICE_UNAVAILABLE;
    case ErrorCode.StorageFailed:
    case ErrorCode.ComputeFailed:
    case ErrorCode.Internal:
      return HttpStatus.INTERNAL_SERVER_ERROR;
  }
}

/** Errors from body parsing (express middleware), which never reach Nest's filters. */
export function bodyParserError(err: { type?: string; status?: number; message?: string }): ErrorBody | undefined {
  if (err.type === 'entity.parse.failed') return { msg: `request body is not valid JSON: ${err.message}`, status_code: 400 };
  if (err.type === 'entity.too.large') return { msg: 'request body is larger than server.body_limit_mb allows', status_code: 413 };
  if (err.type === 'encoding.unsupported' || err.type === 'charset.unsupported') return { msg: `request body: ${err.message}`, status_code: 415 };
  if (typeof err.status === 'number' && err.status >= 400 && err.status < 500) return { msg: `request body: ${err.message}`, status_code: err.status };
  return undefined;
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
    const res = http.getResponse<Response>();
    const req = http.getRequest<Request>();
    const body = this.bodyFor(exception, req);
    res.status(body.status_code).json(body);
  }

  private bodyFor(exception: unknown, req: Request): ErrorBody {
    if (exception instanceof DomainError) {
      const status = statusFor(exception.code);
      // Messages below the controllers are written for clients; redacting again only guards against a slip.
      if (status < 500) return { msg: redactText(exception.message), status_code: status };
      return this.serverError(exception, req, status);
    }
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      // Nest's own 404 for an unknown route: say which request, in the one error shape.
      if (status === 404) return { msg: `not found: ${req.method} ${req.path}`, status_code: 404 };
      if (status < 500) return { msg: redactText(exception.message), status_code: status };
      return this.serverError(exception, req, status);
    }
    const parsed = bodyParserError(exception as { type?: string });
    return parsed ?? this.serverError(exception, req, HttpStatus.INTERNAL_SERVER_ERROR);
  }

  /** 5xx: the client gets only an error id; the log gets the details under the same id, with secrets removed. */
  private serverError(exception: unknown, req: Request, status: number): ErrorBody {
    const errorId = randomUUID();
    const err = exception instanceof Error
      ? { message: redactText(exception.message), stack: exception.stack && redactText(exception.stack) }
      : { message: redactText(String(exception)) };
    this.logger.error({ errorId, status, method: req.method, path: req.path, err }, 'request failed');
    const what = status === HttpStatus.SERVICE_UNAVAILABLE ? 'service unavailable' : 'internal error';
    return { msg: `${what} (id ${errorId})`, status_code: status };
  }
}

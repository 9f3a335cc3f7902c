import { ArgumentsHost, BadRequestException, HttpException, NotFoundException } from '@nestjs/common';
import pino from 'pino';
import { Writable } from 'node:stream';
import { DomainError, ErrorCode } from '../domain/domain-error';
import { ErrorBody, HttpExceptionFilter, statusFor } from './http-exception.filter';
import { parseJsonBody } from '../api-docs/request-body-parsers';

function run(exception: unknown): { status: number; body: ErrorBody; logged: string; headers: Record<string, string> } {
  let logged = '';
  const sink = new Writable({ write: (chunk, _enc, done) => ((logged += String(chunk)), done()) });
  const filter = new HttpExceptionFilter(pino({ level: 'error' }, sink));
  const reply: { status: number; body?: ErrorBody; headers: Record<string, string> } = { status: 0, headers: {} };
  const res = {
    status: (code: number) => ((reply.status = code), res),
    header: (name: string, value: string) => ((reply.headers[name] = value), res),
    send: (body: ErrorBody) => ((reply.body = body), res),
  };
  const req = { method: 'GET', url: '/v1/somewhere?page_token=secret' };
  const host = { switchToHttp: () => ({ getResponse: () => res, getRequest: () => req }) } as unknown as ArgumentsHost;
  filter.catch(exception, host);
  return { status: reply.status, body: reply.body!, logged, headers: reply.headers };
}

describe('HttpExceptionFilter', () => {
  it('maps every domain error code to one status', () => {
    const expected: Record<ErrorCode, number> = {
      [ErrorCode.InvalidArgument]: 400,
      [ErrorCode.StorageDenied]: 400,
      [ErrorCode.NotFound]: 404,
      [ErrorCode.Unauthenticated]: 401,
      [ErrorCode.Forbidden]: 403,
      [ErrorCode.TooManyRequests]: 429,
      [ErrorCode.Conflict]: 409,
      [ErrorCode.PayloadTooLarge]: 413,
      [ErrorCode.UnsupportedMediaType]: 415,
      [ErrorCode.Unavailable]: 503,
      [ErrorCode.Busy]: 503,
      [ErrorCode.StoreFull]: 507,
      [ErrorCode.StoreBroken]: 503,
      [ErrorCode.StorageFailed]: 500,
      [ErrorCode.ComputeFailed]: 500,
      [ErrorCode.Internal]: 500,
    };
    for (const code of Object.values(ErrorCode)) expect([code, statusFor(code)]).toEqual([code, expected[code]]);
  });

  it('answers a rate limit with Retry-After in whole seconds', () => {
    const { status, body, headers } = run(new DomainError(ErrorCode.TooManyRequests, 'slow down', true, 1200));
    expect([status, body, headers]).toEqual([429, { msg: 'slow down', status_code: 429 }, { 'retry-after': '2' }]);
  });

  it('answers client errors with their message in the one error shape', () => {
    expect(run(new DomainError(ErrorCode.InvalidArgument, 'executors[0].image: required')).body).toEqual({ msg: 'executors[0].image: required', status_code: 400 });
    expect(run(new BadRequestException('bad')).body).toEqual({ msg: 'bad', status_code: 400 });
    expect(run(new NotFoundException()).body).toEqual({ msg: 'not found: GET /v1/somewhere', status_code: 404 });
  });

  it('answers unexpected errors with an id only, and logs the details under that id without credentials', () => {
    const { status, body, logged } = run(new Error('connect failed for s3://AKIA:hunter2@bucket/key'));
    expect(status).toBe(500);
    expect(body.msg).toMatch(/^internal error \(id [0-9a-f-]{36}\)$/);
    expect(body.msg).not.toMatch(/hunter2|s3:/);
    const id = /id ([0-9a-f-]{36})/.exec(body.msg)![1];
    expect(logged).toContain(id);
    expect(logged).toContain('s3://***@bucket/key');
    expect(logged).not.toContain('hunter2');
  });

  it('keeps a 503 for an unavailable dependency', () => {
    const { status, body } = run(new DomainError(ErrorCode.Unavailable, 'store is closing'));
    expect(status).toBe(503);
    expect(body).toEqual({ msg: expect.stringMatching(/^service unavailable \(id /), status_code: 503 });
  });

  it('answers Busy as 503 with its message and Retry-After, logging nothing', () => {
    const { status, body, logged, headers } = run(new DomainError(ErrorCode.Busy, 'too many JSON bodies in flight (server.json_in_flight_mb: 128)', true, 1500));
    expect([status, body, headers, logged]).toEqual([503, { msg: 'too many JSON bodies in flight (server.json_in_flight_mb: 128)', status_code: 503 }, { 'retry-after': '2' }, '']);
  });

  it('names the store fault in 507 and 503 answers, for the client to see what is wrong', () => {
    expect(run(new DomainError(ErrorCode.StoreFull, 'the task store is full')).body).toEqual({ msg: 'the task store is full', status_code: 507 });
    expect(run(new DomainError(ErrorCode.StoreBroken, 'the task store file was removed')).body).toEqual({ msg: 'the task store file was removed', status_code: 503 });
  });

  it('answers body errors as 400 naming the problem, and a body beyond the limit as 413 naming the setting', () => {
    let parsed: { err: Error | null; body?: unknown } | undefined;
    parseJsonBody(Buffer.from('{"executors": ['), { json_depth: 64, json_values: 100_000 }, (err, body) => (parsed = { err, body }));
    expect(run(parsed!.err).body).toEqual({ msg: expect.stringMatching(/^request body is not valid JSON: /), status_code: 400 });
    parseJsonBody(Buffer.alloc(0), { json_depth: 64, json_values: 100_000 }, (err, body) => (parsed = { err, body }));
    expect(parsed).toEqual({ err: null, body: undefined });
    parseJsonBody(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x7d]), { json_depth: 64, json_values: 100_000 }, (err, body) => (parsed = { err, body }));
    expect(run(parsed!.err).body).toEqual({ msg: 'request body is not valid UTF-8 (JSON text must be UTF-8)', status_code: 400 });
    // Nest turns Fastify's FST_ERR_CTP_BODY_TOO_LARGE into an HttpException with its status.
    expect(run(new HttpException('Request body is too large', 413)).body).toEqual({ msg: 'request body is larger than server.body_limit_mb allows', status_code: 413 });
  });
});

import { ArgumentsHost, BadRequestException, NotFoundException } from '@nestjs/common';
import pino from 'pino';
import { Writable } from 'node:stream';
import { DomainError, ErrorCode } from '../domain/domain-error';
import { bodyParserError, ErrorBody, HttpExceptionFilter, statusFor } from './http-exception.filter';

function run(exception: unknown): { status: number; body: ErrorBody; logged: string } {
  let logged = '';
  const sink = new Writable({ write: (chunk, _enc, done) => ((logged += String(chunk)), done()) });
  const filter = new HttpExceptionFilter(pino({ level: 'error' }, sink));
  const reply: { status: number; body?: ErrorBody } = { status: 0 };
  const res = { status: (code: number) => ((reply.status = code), res), json: (body: ErrorBody) => ((reply.body = body), res) };
  const req = { method: 'GET', path: '/v1/somewhere' };
  const host = { switchToHttp: () => ({ getResponse: () => res, getRequest: () => req }) } as unknown as ArgumentsHost;
  filter.catch(exception, host);
  return { status: reply.status, body: reply.body!, logged };
}

describe('HttpExceptionFilter', () => {
  it('maps every domain error code to one status', () => {
    const expected: Record<ErrorCode, number> = {
      [ErrorCode.InvalidArgument]: 400,
      [ErrorCode.StorageDenied]: 400,
      [ErrorCode.NotFound]: 404,
      [ErrorCode.Forbidden]: 403,
      [ErrorCode.Conflict]: 409,
      [ErrorCode.PayloadTooLarge]: 413,
      [ErrorCode.Unavailable]: 503,
      [ErrorCode.StorageFailed]: 500,
      [ErrorCode.ComputeFailed]: 500,
      [ErrorCode.Internal]: 500,
    };
    for (const code of Object.values(ErrorCode)) expect([code, statusFor(code)]).toEqual([code, expected[code]]);
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

  it('recognises body-parser errors', () => {
    expect(bodyParserError({ type: 'entity.parse.failed', message: 'Unexpected end of JSON input' })).toEqual({ msg: 'request body is not valid JSON: Unexpected end of JSON input', status_code: 400 });
    expect(bodyParserError({ type: 'entity.too.large', status: 413 })?.status_code).toBe(413);
    expect(bodyParserError(new Error('plain'))).toBeUndefined();
  });
});

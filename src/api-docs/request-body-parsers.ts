import type { FastifyInstance, FastifyRequest } from 'fastify';
import { DomainError, ErrorCode } from '../domain/domain-error';

type Done = (err: Error | null, body?: unknown) => void;

/**
 * application/json: JSON.parse, as Express's parser did (a "__proto__" key stays a plain property; the request
 * parser copies it as an entry). An empty body is no body: a cancel may carry the header and nothing else.
 */
export function parseJsonBody(_req: FastifyRequest, text: string, done: Done): void {
  if (text === '') return done(null, undefined);
  try {
    done(null, JSON.parse(text));
  } catch (err) {
    done(new DomainError(ErrorCode.InvalidArgument, `request body is not valid JSON: ${err instanceof Error ? err.message : String(err)}`));
  }
}

/**
 * JSON bodies are read whole, up to `bodyLimit` bytes (more: 413). Every other content type, multipart/form-data
 * and none included, is left unread: the body of such a request stays in the raw Node request stream, for a route
 * that streams it (see raw-request.decorator.ts) and with no size limit but the route's own. Routes that expect JSON
 * see no body and say so; Node discards what nobody read once the answer is sent.
 */
export function installBodyParsers(fastify: FastifyInstance, bodyLimit: number): void {
  fastify.removeAllContentTypeParsers();
  fastify.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit }, parseJsonBody);
  fastify.addContentTypeParser('*', (_req: FastifyRequest, _payload: unknown, done: Done) => done(null, undefined));
}

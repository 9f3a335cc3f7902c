import type { FastifyInstance, FastifyRequest } from 'fastify';
import { DomainError, ErrorCode } from '../domain/domain-error';

type Done = (err: Error | null, body?: unknown) => void;

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/**
 * application/json: JSON.parse, as Express's parser did (a "__proto__" key stays a plain property; the request
 * parser copies it as an entry). An empty body is no body: a cancel may carry the header and nothing else. Read as
 * bytes and decoded strictly, so a body that is not UTF-8 is named as such (JSON text is UTF-8, RFC 8259).
 */
export function parseJsonBody(_req: FastifyRequest, bytes: Buffer, done: Done): void {
  if (bytes.length === 0) return done(null, undefined);
  let text: string;
  try {
    text = UTF8.decode(bytes);
  } catch {
    return done(new DomainError(ErrorCode.InvalidArgument, 'request body is not valid UTF-8 (JSON text must be UTF-8)'));
  }
  try {
    done(null, JSON.parse(text));
  } catch (err) {
    done(new DomainError(ErrorCode.InvalidArgument, `request body is not valid JSON: ${err instanceof Error ? err.message : String(err)}`));
  }
}

/**
 * Compressed request bodies are refused before a byte is read: inflating them would let a small body become a
 * large one (a 66 KB gzip body is 64 MiB of JSON), and no TES client compresses what it sends.
 */
export function refuseEncodedBodies(req: FastifyRequest): void {
  const encoding = req.headers['content-encoding'];
  if (encoding === undefined || encoding.trim() === '' || encoding.trim().toLowerCase() === 'identity') return;
  const shown = encoding.length > 40 ? `${encoding.slice(0, 40)}...` : encoding;
  throw new DomainError(ErrorCode.UnsupportedMediaType, `Content-Encoding "${shown}" is not accepted: send the request body uncompressed`);
}

/**
 * JSON bodies are read whole, up to `bodyLimit` bytes (more: 413). Every other content type, multipart/form-data
 * and none included, is left unread: the body of such a request stays in the raw Node request stream, for a route
 * that streams it (see raw-request.decorator.ts) and with no size limit but the route's own. Routes that expect JSON
 * see no body and say so; Node discards what nobody read once the answer is sent.
 */
export function installBodyParsers(fastify: FastifyInstance, bodyLimit: number): void {
  fastify.removeAllContentTypeParsers();
  fastify.addHook('onRequest', async (req) => refuseEncodedBodies(req));
  fastify.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit }, parseJsonBody);
  fastify.addContentTypeParser('*', (_req: FastifyRequest, _payload: unknown, done: Done) => done(null, undefined));
}

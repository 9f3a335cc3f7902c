import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingMessage } from 'node:http';
import { DomainError, ErrorCode } from '../domain/domain-error';

type Done = (err: Error | null, body?: unknown) => void;

/** The shape JSON bodies may have (settings limits.json_depth, limits.json_values). */
export interface JsonShapeLimits {
  json_depth: number;
  json_values: number;
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * One pass over the bytes, before JSON.parse, that stops at the first bracket beyond `json_depth` or value beyond
 * `json_values`. JSON.parse's cost is in the structure, not the bytes: 14 MiB of nested brackets took it 8 s and
 * 800 MiB, 900 000 object members 2 s. Strings are skipped with indexOf (UTF-8 continuation bytes are never ASCII,
 * so a byte scan is exact). Values are counted as containers plus commas plus one: exact but for empty containers.
 */
export function jsonShapeProblem(bytes: Buffer, limits: JsonShapeLimits): string | undefined {
  let depth = 0;
  let values = 1;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (c === QUOTE) {
      let end = i;
      for (;;) {
        end = bytes.indexOf(QUOTE, end + 1);
        if (end === -1) return undefined; // unterminated: JSON.parse says so
        let backslashes = 0;
        while (bytes[end - 1 - backslashes] === BACKSLASH) backslashes++;
        if (backslashes % 2 === 0) break;
      }
      i = end;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > limits.json_depth) return `request body: JSON nested deeper than limits.json_depth (${limits.json_depth})`;
      if (++values > limits.json_values) return `request body: more JSON values than limits.json_values (${limits.json_values})`;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    } else if (c === 0x2c) {
      if (++values > limits.json_values) return `request body: more JSON values than limits.json_values (${limits.json_values})`;
    }
  }
  return undefined;
}

/**
 * application/json: JSON.parse, as Express's parser did (a "__proto__" key stays a plain property; the request
 * parser copies it as an entry). An empty body is no body: a cancel may carry the header and nothing else. Read as
 * bytes and decoded strictly, so a body that is not UTF-8 is named as such (JSON text is UTF-8, RFC 8259).
 */
export function parseJsonBody(bytes: Buffer, limits: JsonShapeLimits, done: Done): void {
  if (bytes.length === 0) return done(null, undefined);
  const shape = jsonShapeProblem(bytes, limits);
  if (shape) return done(new DomainError(ErrorCode.InvalidArgument, shape));
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
 * Compressed request bodies are refused, never inflated: inflating them would let a small body become a large one (a
 * 66 KB gzip body is 64 MiB of JSON), and no TES client compresses what it sends. The body is read and dropped as it
 * arrives (at most `bodyLimit` bytes, nothing kept) before the answer, so that a client still sending it gets the
 * 415 rather than a broken pipe. Beyond `bodyLimit` the rest is left unread and the answer closes the connection:
 * kept alive, the connection would stay paused under that rest, and the client's next request on it would wait
 * unread until the keep-alive timeout reset it.
 */
async function refuseEncodedBody(req: FastifyRequest, reply: FastifyReply, encoding: string, bodyLimit: number): Promise<void> {
  const whole = await discardBody(req.raw, bodyLimit);
  if (!whole) void reply.header('connection', 'close');
  const shown = encoding.length > 40 ? `${encoding.slice(0, 40)}...` : encoding;
  throw new DomainError(ErrorCode.UnsupportedMediaType, `Content-Encoding "${shown}" is not accepted: send the request body uncompressed`);
}

/** The Content-Encoding of a request's body, when it has a body and an encoding other than identity. */
function encodedBodyOf(req: FastifyRequest): string | undefined {
  const encoding = req.headers['content-encoding'];
  if (encoding === undefined || encoding.trim() === '' || encoding.trim().toLowerCase() === 'identity') return undefined;
  // No body, nothing to inflate (a GET that carries the header by habit).
  const length = req.headers['content-length'];
  if (req.headers['transfer-encoding'] === undefined && (length === undefined || length === '0')) return undefined;
  return encoding;
}

/** Reads a request body to its end and drops it: true once it ended, false when it stopped reading past `limit`. */
function discardBody(body: IncomingMessage, limit: number): Promise<boolean> {
  return new Promise((resolve) => {
    let seen = 0;
    const finish = (ended: boolean) => {
      body.off('data', onData);
      resolve(ended);
    };
    const onData = (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > limit) {
        body.pause();
        finish(false);
      }
    };
    body.on('data', onData);
    body.once('end', () => finish(true));
    body.once('close', () => finish(body.complete));
    body.once('error', () => finish(false));
  });
}

/**
 * Bytes of JSON bodies being read and parsed at once, over all requests: each costs about three times its size in
 * memory until its answer (the bytes, the text, the parsed strings). A request that would pass `budget` answers 503
 * with Retry-After before its body is read. It reserves its Content-Length, or the body limit when none is given
 * (chunked), and frees it when its answer is sent or its connection closes.
 */
export function limitJsonBodiesInFlight(fastify: FastifyInstance, bodyLimit: number, budget: number, settingKey: string): void {
  // A budget below the body limit would refuse the largest bodies forever.
  const bound = Math.max(budget, bodyLimit);
  let inFlight = 0;
  // Callback hooks, not async ones: every request passes here, and a promise each costs more than the check.
  fastify.addHook('preParsing', (req, reply, _payload, done) => {
    const type = req.headers['content-type'];
    if (typeof type !== 'string' || !/^\s*application\/json\s*(;|$)/i.test(type)) return done(null);
    const length = Number(req.headers['content-length']);
    // Beyond the body limit Fastify answers 413 without reading; nothing to reserve.
    const reserve = Number.isFinite(length) ? (length > bodyLimit ? 0 : length) : bodyLimit;
    if (reserve === 0) return done(null);
    if (inFlight + reserve > bound) {
      return done(new DomainError(ErrorCode.Busy, `too many JSON request bodies are being read at once (${settingKey}: ${Math.round(bound / (1024 * 1024))} MiB in all); retry shortly`, true, 1000));
    }
    inFlight += reserve;
    reply.raw.once('close', () => (inFlight -= reserve));
    done(null);
  });
}

/**
 * JSON bodies are read whole, up to `bodyLimit` bytes (more: 413). Every other content type, multipart/form-data
 * and none included, is left unread: the body of such a request stays in the raw Node request stream, for a route
 * that streams it (see raw-request.decorator.ts) and with no size limit but the route's own. Routes that expect JSON
 * see no body and say so; Node discards what nobody read once the answer is sent.
 */
export function installBodyParsers(fastify: FastifyInstance, bodyLimit: number, limits: JsonShapeLimits): void {
  fastify.removeAllContentTypeParsers();
  // A callback hook: the common request (no encoded body) passes without a promise.
  fastify.addHook('onRequest', (req, reply, done) => {
    const encoding = encodedBodyOf(req);
    if (encoding === undefined) return done();
    refuseEncodedBody(req, reply, encoding, bodyLimit).then(() => done(), done);
  });
  fastify.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit }, (_req: FastifyRequest, bytes: Buffer, done: Done) => parseJsonBody(bytes, limits, done));
  fastify.addContentTypeParser('*', (_req: FastifyRequest, _payload: unknown, done: Done) => done(null, undefined));
}

import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Settings } from '../config/settings.schema';

// How long a client may take and how many may be connected: slow or idle clients must not hold the server. Node
// checks the header and request timeouts on a timer (30 s by default), so a short timeout gets a short timer.

/** Node's limit on a request head (URL and headers), beyond which it answers 431. */
export const MAX_HEADER_BYTES = 16 * 1024;

const DROP_LOG_INTERVAL_MS = 60_000;

type ServerSettings = Settings['server'];

/** Fastify's options for the timeouts (and Node's http.createServer options, which Fastify passes through). */
export function connectionOptions(server: ServerSettings) {
  // Node refuses a header timeout longer than the request timeout.
  const headersTimeout = Math.min(server.headers_timeout_ms, server.request_timeout_ms);
  return {
    keepAliveTimeout: server.keep_alive_timeout_ms,
    requestTimeout: server.request_timeout_ms,
    http: {
      headersTimeout,
      maxHeaderSize: MAX_HEADER_BYTES,
      connectionsCheckingInterval: Math.min(1000, Math.ceil(headersTimeout / 2)),
    },
  };
}

/**
 * Caps open connections: Node closes the ones beyond server.max_connections as they arrive. A flood of them is
 * logged when it starts and then at most once a minute, with how many were closed meanwhile.
 */
export function limitConnections(http: Server, server: ServerSettings, warn: (message: string) => void): void {
  http.maxConnections = server.max_connections;
  let dropped = 0;
  let lastLog = -Infinity;
  http.on('drop', () => {
    dropped++;
    const now = Date.now();
    if (now - lastLog < DROP_LOG_INTERVAL_MS) return;
    lastLog = now;
    warn(`connection limit reached: server.max_connections (${server.max_connections}) connections are open, new ones are closed until others end (${dropped} closed since the last warning)`);
    dropped = 0;
  });
}

/**
 * Fastify's clientErrorHandler: what Node refuses before any route runs (a slow or oversized request head, bytes
 * that are not HTTP) is answered in the API's one error shape, {msg, status_code}, then the connection closes.
 */
export function clientErrorReply(server: ServerSettings) {
  return (err: NodeJS.ErrnoException, socket: Socket): void => {
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    const [status, msg] =
      err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, `request not received in time (server.headers_timeout_ms: ${server.headers_timeout_ms} for the head, server.request_timeout_ms: ${server.request_timeout_ms} for all of it)`]
        : err.code === 'HPE_HEADER_OVERFLOW'
          ? [431, `request head (URL and headers) is larger than ${MAX_HEADER_BYTES} bytes`]
          : [400, `malformed HTTP request${err.code ? ` (${err.code})` : ''}`];
    const body = JSON.stringify({ msg, status_code: status });
    if (socket.writable) {
      socket.write(`HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    }
    socket.destroy();
  };
}

/**
 * Fastify's frameworkErrors: a path whose percent-encoding does not decode (e.g. /tasks/%ff) is refused by its
 * router before any route runs; it is answered in the one error shape, without the path (it may carry a token).
 */
export function frameworkErrorReply(err: FastifyError, _req: FastifyRequest, reply: FastifyReply): void {
  const badPath = err.code === 'FST_ERR_BAD_URL';
  const status = badPath ? 400 : 500;
  void reply.code(status).send({ msg: badPath ? 'request path is not valid: a percent-encoded part of it is not UTF-8' : 'internal error', status_code: status });
}

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' };

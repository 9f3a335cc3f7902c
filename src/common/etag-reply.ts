import { hash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * A strong ETag for a JSON body: a hash of its bytes, so an unchanged task has the same tag on every replica and
 * after a restart or a store copy, and any change a view shows (a state, a log line) gives a new one.
 */
export function etagOf(json: string): string {
  // The one-shot hash: a third of createHash's cost on a poll's small body.
  return `"${hash('sha1', json, 'base64url')}"`;
}

/** Whether an If-None-Match header names `etag`: weak comparison as RFC 9110 asks for GET (W/ ignored), `*` any. */
export function ifNoneMatchNames(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((tag) => {
    const trimmed = tag.trim();
    return (trimmed.startsWith('W/') ? trimmed.slice(2) : trimmed) === etag;
  });
}

/**
 * Answers `body` as JSON with its ETag, or 304 without a body when the request's If-None-Match already names it.
 * no-cache: a cache may keep the answer but must ask again each time (the tag makes asking cheap).
 */
export function sendWithEtag(req: FastifyRequest, reply: FastifyReply, body: unknown): void {
  // Serialised here once: the tag is of the bytes sent.
  const json = JSON.stringify(body);
  const etag = etagOf(json);
  void reply.header('etag', etag).header('cache-control', 'no-cache');
  if (ifNoneMatchNames(req.headers['if-none-match'], etag)) {
    void reply.code(304).send();
    return;
  }
  void reply.type('application/json; charset=utf-8').send(json);
}

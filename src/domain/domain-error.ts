// Errors below the controllers carry a code; the one exception filter maps codes to HTTP statuses.

export enum ErrorCode {
  InvalidArgument = 'INVALID_ARGUMENT',
  NotFound = 'NOT_FOUND',
  /** The request carries no credentials, or credentials that are not valid (401, with the accepted schemes). */
  Unauthenticated = 'UNAUTHENTICATED',
  /** The caller may not do this (e.g. a staging URL whose key or attempt is not valid, or no longer). */
  Forbidden = 'FORBIDDEN',
  Conflict = 'CONFLICT',
  PayloadTooLarge = 'PAYLOAD_TOO_LARGE',
  /** A request body in an encoding or media type the server does not take (e.g. Content-Encoding: gzip). */
  UnsupportedMediaType = 'UNSUPPORTED_MEDIA_TYPE',
  /** A storage location refused or could not serve a transfer. */
  StorageFailed = 'STORAGE_FAILED',
  /** A URL names a scheme, host or directory that settings do not allow. */
  StorageDenied = 'STORAGE_DENIED',
  ComputeFailed = 'COMPUTE_FAILED',
  Unavailable = 'UNAVAILABLE',
  /** The caller sent more requests than its rate limit allows; retryAfterMs says when to try again. */
  TooManyRequests = 'TOO_MANY_REQUESTS',
  /** This server is at a bound of its own (e.g. JSON bodies in flight) and asks the client to retry shortly. */
  Busy = 'BUSY',
  /** The task store's disk is full: nothing more can be written until space is freed (reads still work). */
  StoreFull = 'STORE_FULL',
  /** The task store's file was removed, replaced or corrupted while in use: writes stop until an operator acts. */
  StoreBroken = 'STORE_BROKEN',
  Internal = 'INTERNAL',
}

export class DomainError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Whether retrying the same operation may succeed (network errors, 5xx, rate limits). */
    readonly transient = false,
    /** How long the other side asked us to wait before retrying (Retry-After, SlowDown). */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'DomainError';
  }
}

export const invalidArgument = (message: string) => new DomainError(ErrorCode.InvalidArgument, message);
export const notFound = (message: string) => new DomainError(ErrorCode.NotFound, message);

/** A fault of the task store itself (full, removed, corrupted): the store logs it once, so callers need not each time. */
export const isStoreFault = (err: unknown): boolean => err instanceof DomainError && (err.code === ErrorCode.StoreFull || err.code === ErrorCode.StoreBroken);

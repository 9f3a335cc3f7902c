import { DomainError, ErrorCode } from '../domain/domain-error';

/** Callers tracked at once; the one idle longest is forgotten first (and starts again with a full bucket). */
const MAX_BUCKETS = 10_000;

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * auth.rate_limit: a token bucket per caller, `burst` requests deep, refilled at requests_per_minute. Memory stays
 * bounded: buckets live in a Map in order of last use, and beyond MAX_BUCKETS the least recently used goes.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perMs: number;
  private readonly capacity: number;

  constructor(
    requestsPerMinute: number,
    burst: number,
    private readonly now: () => number = Date.now,
    private readonly maxBuckets = MAX_BUCKETS,
  ) {
    this.perMs = requestsPerMinute / 60_000;
    this.capacity = burst > 0 ? burst : requestsPerMinute;
  }

  get enabled(): boolean {
    return this.perMs > 0;
  }

  /** Takes one request from the caller's bucket, or throws TooManyRequests saying when the next one is allowed. */
  take(caller: string): void {
    if (!this.enabled) return;
    const now = this.now();
    const bucket = this.buckets.get(caller);
    const tokens = bucket ? Math.min(this.capacity, bucket.tokens + (now - bucket.at) * this.perMs) : this.capacity;
    this.buckets.delete(caller);
    if (tokens < 1) {
      this.buckets.set(caller, { tokens, at: now });
      const waitMs = Math.ceil((1 - tokens) / this.perMs);
      throw new DomainError(ErrorCode.TooManyRequests, `too many requests: auth.rate_limit allows ${Math.round(this.perMs * 60_000)} a minute; retry in ${Math.ceil(waitMs / 1000)} s`, true, waitMs);
    }
    this.buckets.set(caller, { tokens: tokens - 1, at: now });
    while (this.buckets.size > this.maxBuckets) this.buckets.delete(this.buckets.keys().next().value as string);
  }

  /** Callers tracked now (for tests of the bound). */
  get size(): number {
    return this.buckets.size;
  }
}

import { DomainError, ErrorCode } from '../domain/domain-error';
import { RateLimiter } from './rate-limiter';

function refusal(take: () => void): DomainError | undefined {
  try {
    take();
    return undefined;
  } catch (err) {
    return err as DomainError;
  }
}

describe('RateLimiter', () => {
  it('lets a burst through, then refuses with the wait until the next request is allowed', () => {
    let now = 0;
    const limiter = new RateLimiter(60, 2, () => now);
    limiter.take('alice');
    limiter.take('alice');
    const refused = refusal(() => limiter.take('alice'));
    expect([refused?.code, refused?.retryAfterMs]).toEqual([ErrorCode.TooManyRequests, 1000]);
    now = 1000;
    expect(refusal(() => limiter.take('alice'))).toBeUndefined();
  });

  it('keeps one bucket per caller', () => {
    const limiter = new RateLimiter(60, 1, () => 0);
    limiter.take('alice');
    expect(refusal(() => limiter.take('alice'))?.code).toBe(ErrorCode.TooManyRequests);
    expect(refusal(() => limiter.take('bob'))).toBeUndefined();
  });

  it('uses requests_per_minute as the burst when burst is 0, and takes nothing when off', () => {
    const limiter = new RateLimiter(3, 0, () => 0);
    for (let i = 0; i < 3; i++) limiter.take('alice');
    expect(refusal(() => limiter.take('alice'))?.code).toBe(ErrorCode.TooManyRequests);
    const off = new RateLimiter(0, 0, () => 0);
    for (let i = 0; i < 100; i++) off.take('alice');
    expect(off.size).toBe(0);
  });

  it('tracks a bounded number of callers, forgetting the least recently seen first', () => {
    const limiter = new RateLimiter(60, 1, () => 0, 3);
    for (const caller of ['a', 'b', 'c']) limiter.take(caller);
    expect(refusal(() => limiter.take('a'))?.code).toBe(ErrorCode.TooManyRequests); // a is now the most recent
    limiter.take('d'); // b goes
    expect(limiter.size).toBe(3);
    expect(refusal(() => limiter.take('b'))).toBeUndefined();
    expect(refusal(() => limiter.take('a'))?.code).toBe(ErrorCode.TooManyRequests);
  });
});

import { DomainError, ErrorCode } from '../../domain/domain-error';
import { planParts, retryDelay, transferParts, TransferPart, withRetries } from './transfer-engine';

const fast = { retries: 3, baseMs: 1, maxMs: 5 };

describe('transfer engine', () => {
  it('plans parts that cover the file exactly', () => {
    expect(planParts(10, 4)).toEqual([
      { index: 0, offset: 0, length: 4 },
      { index: 1, offset: 4, length: 4 },
      { index: 2, offset: 8, length: 2 },
    ]);
    expect(planParts(0, 4)).toEqual([{ index: 0, offset: 0, length: 0 }]);
  });

  it('never runs more parts at once than allowed', async () => {
    let running = 0;
    let peak = 0;
    await transferParts(planParts(100, 10), async () => {
      running += 1;
      peak = Math.max(peak, running);
      await new Promise((resolve) => setTimeout(resolve, 5));
      running -= 1;
    }, { concurrency: 3, retry: fast });
    expect(peak).toBe(3);
  });

  it('retries a failed part from where it stopped, and only that part', async () => {
    const calls: Array<[number, number]> = [];
    const seen: number[] = [];
    const reported: number[] = [];
    await transferParts(planParts(30, 10), async (part: TransferPart, progress) => {
      calls.push([part.index, progress.done]);
      if (part.index === 1 && progress.attempt === 0) {
        progress.done += 4; // bytes that arrived before the cut
        throw new DomainError(ErrorCode.StorageFailed, 'cut', true);
      }
      progress.done = part.length;
      seen.push(part.index);
    }, { concurrency: 2, retry: fast, onProgress: (bytes) => reported.push(bytes) });
    expect(calls.filter(([index]) => index === 1)).toEqual([[1, 0], [1, 4]]);
    // Progress comes as increments; the 4 bytes before the cut are not counted again after the resume.
    expect(reported.every((bytes) => bytes > 0)).toBe(true);
    expect(reported.reduce((a, b) => a + b, 0)).toBe(30);
    expect(calls.filter(([index]) => index !== 1)).toEqual([[0, 0], [2, 0]]);
    expect(seen.sort()).toEqual([0, 1, 2]);
  });

  it('stops at the first part that fails for good', async () => {
    const attempted: number[] = [];
    const run = transferParts(planParts(50, 10), async (part) => {
      attempted.push(part.index);
      if (part.index === 0) throw new DomainError(ErrorCode.StorageFailed, 'denied');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }, { concurrency: 1, retry: fast });
    await expect(run).rejects.toThrow('denied');
    expect(attempted).toEqual([0]);
  });

  it('retries transient errors up to the limit and not others', async () => {
    let attempts = 0;
    await expect(withRetries(fast, undefined, async () => {
      attempts += 1;
      throw new DomainError(ErrorCode.StorageFailed, 'busy', true);
    })).rejects.toThrow('busy');
    expect(attempts).toBe(4);
    attempts = 0;
    await expect(withRetries(fast, undefined, async () => {
      attempts += 1;
      throw new DomainError(ErrorCode.StorageDenied, 'no');
    })).rejects.toThrow('no');
    expect(attempts).toBe(1);
  });

  it('backs off exponentially with jitter, capped, and honours a retry-after hint', () => {
    const policy = { retries: 5, baseMs: 100, maxMs: 1000 };
    for (let i = 0; i < 50; i++) {
      const d0 = retryDelay(policy, 0);
      const d3 = retryDelay(policy, 3);
      expect(d0).toBeGreaterThanOrEqual(50);
      expect(d0).toBeLessThanOrEqual(100);
      expect(d3).toBeGreaterThanOrEqual(400);
      expect(d3).toBeLessThanOrEqual(800);
      expect(retryDelay(policy, 10)).toBeLessThanOrEqual(1000);
    }
    expect(retryDelay(policy, 0, 250)).toBe(250);
    expect(retryDelay(policy, 0, 60_000)).toBe(1000);
  });
});

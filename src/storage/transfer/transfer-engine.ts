import { DomainError, ErrorCode } from '../../domain/domain-error';

// The one transfer engine every storage scheme uses: a file is split into parts, parts move in parallel with a
// bounded number of workers, and a failed part is retried (with exponential backoff and jitter) from where it
// stopped, not from the start of the file. Memory is bounded by the workers' stream buffers, not the file size.

export interface RetryPolicy {
  retries: number;
  baseMs: number;
  maxMs: number;
}

export interface TransferPart {
  index: number;
  offset: number;
  length: number;
}

export interface PartProgress {
  /** Bytes of this part already transferred; a retry continues from here. */
  done: number;
  /** Attempts made before this one. */
  attempt: number;
}

export interface PartOptions {
  concurrency: number;
  retry: RetryPolicy;
  signal?: AbortSignal;
  /** Called with the bytes moved since the last call, across all parts (bytes a retry resumes after count once). */
  onProgress?: (bytes: number) => void;
}

/** Parts of `partSize` bytes covering `size` bytes (one empty part for an empty file). */
export function planParts(size: number, partSize: number): TransferPart[] {
  if (size <= 0) return [{ index: 0, offset: 0, length: 0 }];
  const parts: TransferPart[] = [];
  for (let offset = 0, index = 0; offset < size; offset += partSize, index++) {
    parts.push({ index, offset, length: Math.min(partSize, size - offset) });
  }
  return parts;
}

/**
 * Runs `move` for every part with at most `concurrency` at once. `move` reports bytes through
 * `progress.done` (it must add what it transferred before throwing), so a retry resumes inside the part.
 * The first part that fails for good stops the others and is rethrown.
 */
export async function transferParts(
  parts: readonly TransferPart[],
  move: (part: TransferPart, progress: PartProgress, signal: AbortSignal, worker: number) => Promise<void>,
  options: PartOptions,
): Promise<void> {
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const progress = new Map(parts.map((part): [TransferPart, PartProgress] => [part, { done: 0, attempt: 0 }]));
  let next = 0;
  let failure: unknown;
  let reported = 0;
  const report = () => {
    let total = 0;
    for (const p of progress.values()) total += p.done;
    if (total > reported) {
      options.onProgress?.(total - reported);
      reported = total;
    }
  };
  // Each worker keeps its number, so a protocol that binds a stream to one writer at a time (iRODS) can use it.
  const worker = async (_: unknown, workerIndex: number) => {
    while (failure === undefined && next < parts.length) {
      const part = parts[next++];
      const state = progress.get(part)!;
      try {
        await withRetries(options.retry, stop.signal, async () => {
          try {
            await move(part, state, stop.signal, workerIndex);
          } finally {
            state.attempt += 1;
            report();
          }
        });
      } catch (err) {
        failure ??= err;
        stop.abort();
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, Math.min(options.concurrency, parts.length)) }, worker));
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
  if (failure !== undefined) throw failure;
}

/** Runs `attempt` until it succeeds, retrying transient DomainErrors; honours a server's retry-after hint. */
export async function withRetries<T>(policy: RetryPolicy, signal: AbortSignal | undefined, attempt: () => Promise<T>): Promise<T> {
  for (let n = 0; ; n++) {
    try {
      return await attempt();
    } catch (err) {
      const transient = err instanceof DomainError && err.transient;
      if (!transient || n >= policy.retries || signal?.aborted) throw err;
      await sleep(retryDelay(policy, n, err.retryAfterMs), signal);
    }
  }
}

/** Exponential backoff with jitter (half fixed, half random), capped; a retry-after hint wins, also capped. */
export function retryDelay(policy: RetryPolicy, attempt: number, retryAfterMs?: number): number {
  if (retryAfterMs !== undefined) return Math.min(retryAfterMs, policy.maxMs);
  const backoff = Math.min(policy.maxMs, policy.baseMs * 2 ** attempt);
  return backoff / 2 + Math.random() * (backoff / 2);
}

/** Waits `ms`, or rejects with 'transfer aborted' when the signal fires first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new DomainError(ErrorCode.StorageFailed, 'transfer aborted'));
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(new DomainError(ErrorCode.StorageFailed, 'transfer aborted'));
    }, { once: true });
  });
}

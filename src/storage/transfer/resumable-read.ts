import { Readable } from 'node:stream';
import { DomainError, ErrorCode } from '../../domain/domain-error';
import { errorMessage } from '../../common/redact';
import { retryDelay, RetryPolicy, sleep, withRetries } from './transfer-engine';

/**
 * Opens the object's bytes from `offset` on. The stream may end before the object does (one ranged part): the
 * read then opens again where it ended. Throws a non-transient DomainError where resuming is impossible.
 */
export type OpenAt = (offset: number, signal: AbortSignal) => Promise<Readable>;

export interface ResumableReadOptions {
  retry: RetryPolicy;
  signal?: AbortSignal;
  /** What is read, for messages. */
  subject: string;
  /** The object's size once known (often from the first answer): a body that ends before it is continued. */
  total?: () => number | undefined;
  /** Sees every chunk before the consumer does (a running checksum). */
  onChunk?: (chunk: Buffer) => void;
  /** Checks the whole read at its end; an error returned fails the stream instead of ending it. */
  atEnd?: () => Error | undefined;
}

/**
 * A stream of an object that survives broken connections: the first open is retried (so a missing object or a
 * refused login rejects here, before any byte), and a body that breaks off or ends short is opened again at the
 * offset reached. Memory: the stream buffers of one open body at a time.
 */
export async function resumableRead(openAt: OpenAt, options: ResumableReadOptions): Promise<Readable> {
  // Fires when the consumer gives up (destroys the stream) or the caller's signal does.
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  let current: Readable;
  try {
    current = await withRetries(options.retry, stop.signal, () => openAt(0, stop.signal));
  } catch (err) {
    options.signal?.removeEventListener('abort', onAbort);
    throw err;
  }
  // A body in flight stops with the transfer, so a consumer waiting for bytes gets the abort, not a hang.
  stop.signal.addEventListener('abort', () => current.destroy(), { once: true });
  const reopen = async (offset: number) => {
    current = await withRetries(options.retry, stop.signal, () => openAt(offset, stop.signal));
  };
  async function* chunks(): AsyncGenerator<Buffer> {
    let offset = 0;
    let failures = 0;
    try {
      for (;;) {
        const before = offset;
        try {
          for await (const chunk of current as AsyncIterable<Buffer>) {
            offset += chunk.length;
            options.onChunk?.(chunk);
            yield chunk;
          }
        } catch (err) {
          if (stop.signal.aborted) throw new DomainError(ErrorCode.StorageFailed, `${options.subject}: aborted`);
          // Errors of a body in flight are network trouble unless an adapter said otherwise.
          const failure = err instanceof DomainError ? err : new DomainError(ErrorCode.StorageFailed, `${options.subject}: read broke off at ${offset}: ${errorMessage(err)}`, true);
          if (!failure.transient || failures >= options.retry.retries) throw failure;
          await sleep(retryDelay(options.retry, failures++, failure.retryAfterMs), stop.signal);
          await reopen(offset);
          continue;
        }
        const total = options.total?.();
        if (total === undefined || offset >= total) break;
        // A body with nothing in it makes no progress: count it, or a server that answers empty loops forever.
        if (offset === before && failures++ >= options.retry.retries) {
          throw new DomainError(ErrorCode.StorageFailed, `${options.subject}: the stream ended after ${offset} of ${total} bytes`);
        }
        await reopen(offset);
      }
      const wrong = options.atEnd?.();
      if (wrong) throw wrong;
    } finally {
      current.destroy();
      options.signal?.removeEventListener('abort', onAbort);
    }
  }
  const stream = Readable.from(chunks(), { objectMode: false });
  // A consumer that stops reading destroys the stream: the open body and its connection go with it.
  stream.once('close', () => {
    stop.abort();
    current.destroy();
  });
  return stream;
}

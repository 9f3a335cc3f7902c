import { createHash, Hash } from 'node:crypto';
import { Readable } from 'node:stream';
import { DomainError, ErrorCode } from '../../domain/domain-error';
import type { UploadResult } from './hashed-read';
import { RetryPolicy, withRetries } from './transfer-engine';

/**
 * A stream handed to uploadStream, read exactly once. Every chunk is hashed and counted as it is taken, so the
 * result describes what the destination was given. Until the first chunk is taken the source is untouched and an
 * attempt may be retried (`attempt()` gives each one a fresh Readable over the same source); after that, the bytes
 * are gone and only what a backend still holds in memory (a multipart part, an iRODS chunk) can be sent again.
 */
export class SinglePassSource {
  private readonly hash = createHash('sha256');
  /** Another digest the destination may report (iRODS MD5 zones), fed beside the SHA-256. */
  private readonly extra?: Hash;
  private iterator?: AsyncIterator<unknown>;
  private taken = 0;
  private ended = false;
  private failure?: unknown;
  private digest?: string;
  /** A chunk split at a part boundary: its rest starts the next part. */
  private leftover?: Buffer;

  constructor(
    private readonly source: Readable,
    private readonly onBytes?: (bytes: number) => void,
    extraDigest?: 'md5',
  ) {
    this.extra = extraDigest ? createHash(extraDigest) : undefined;
    // Errors are read through the iterator; a listener keeps an early one from crashing the process meanwhile.
    source.on('error', (err) => (this.failure ??= err));
  }

  /** Whether any byte was taken from the source (then the stream cannot be sent again from its start). */
  get started(): boolean {
    return this.iterator !== undefined;
  }

  get bytes(): number {
    return this.taken;
  }

  /** The error the source itself failed with, if it did: reported as it is, never as a storage failure. */
  get sourceError(): unknown {
    return this.failure;
  }

  /** Bytes and SHA-256 of what was taken; call once the source has ended. */
  result(): UploadResult {
    return { bytes: this.taken, sha256: (this.digest ??= this.hash.digest('hex')) };
  }

  extraDigest(): Buffer | undefined {
    return this.extra?.digest();
  }

  /** The next chunk of the source, or undefined at its end. */
  async next(): Promise<Buffer | undefined> {
    if (this.leftover) {
      const chunk = this.leftover;
      this.leftover = undefined;
      return chunk;
    }
    if (this.ended) return undefined;
    this.iterator ??= this.source[Symbol.asyncIterator]();
    let step: IteratorResult<unknown>;
    try {
      step = await this.iterator.next();
    } catch (err) {
      this.failure ??= err;
      throw err;
    }
    if (step.done) {
      this.ended = true;
      return undefined;
    }
    const chunk = Buffer.isBuffer(step.value) ? step.value : Buffer.from(step.value as string);
    this.hash.update(chunk);
    this.extra?.update(chunk);
    this.taken += chunk.length;
    this.onBytes?.(chunk.length);
    return chunk;
  }

  /**
   * The next piece of at most `limit` bytes, cut from the stream in order; empty at its end. Memory: the piece
   * (and, while it is joined, its chunks), plus at most one chunk kept over for the next piece.
   */
  async readUpTo(limit: number): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let length = 0;
    while (length < limit) {
      const chunk = await this.next();
      if (!chunk) break;
      const used = Math.min(chunk.length, limit - length);
      chunks.push(used < chunk.length ? chunk.subarray(0, used) : chunk);
      if (used < chunk.length) this.leftover = chunk.subarray(used);
      length += used;
    }
    return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, length);
  }

  /** Whether the source has more bytes (peeks one chunk, kept for the next read). */
  async hasMore(): Promise<boolean> {
    if (this.leftover) return true;
    const chunk = await this.next();
    if (chunk) this.leftover = chunk;
    return chunk !== undefined;
  }

  /**
   * A Readable over the rest of the source for one attempt. Destroying it (a failed request) leaves the source
   * alone, so an attempt that never pulled a byte can be made again.
   */
  attempt(): Readable {
    const stream: Readable = new Readable({
      read: () => {
        this.next().then(
          (chunk) => stream.push(chunk ?? null),
          (err: Error) => stream.destroy(err),
        );
      },
    });
    return stream;
  }

  /** A DomainError when the stream's length was announced and it ended at another one, else undefined. */
  sizeMismatch(expected: number | undefined, subject: string): DomainError | undefined {
    if (expected === undefined || expected === this.taken) return undefined;
    return new DomainError(ErrorCode.StorageFailed, `${subject}: the stream was announced as ${expected} bytes but had ${this.taken}`);
  }

  /** Gives up the source (a final failure): it stops producing and releases what it holds. */
  discard(): void {
    if (!this.source.destroyed) this.source.destroy();
  }
}

/**
 * Runs `send` with the backend's retries while the source is untouched (a refused connection, a failed login);
 * once bytes were taken, a failure is final and says why it is not retried. A failure of the source itself is
 * rethrown unchanged. The source is discarded on failure.
 */
export async function sendOnce<T>(input: SinglePassSource, retry: RetryPolicy, signal: AbortSignal | undefined, subject: string, send: () => Promise<T>): Promise<T> {
  try {
    return await withRetries(retry, signal, async () => {
      try {
        return await send();
      } catch (err) {
        throw input.started ? unrepeatable(input, subject, err) : err;
      }
    });
  } catch (err) {
    input.discard();
    throw input.sourceError ?? err;
  }
}

/** A failure after bytes of a single-pass stream were sent: final, since the stream cannot be read again. */
export function unrepeatable(input: SinglePassSource, subject: string, err: unknown): unknown {
  if (input.sourceError !== undefined) return input.sourceError;
  if (!(err instanceof DomainError)) return err;
  if (!err.transient) return err;
  return new DomainError(ErrorCode.StorageFailed, `${err.message} (after ${input.bytes} bytes of a stream to ${subject}; a stream cannot be read again, so the upload is not retried)`);
}

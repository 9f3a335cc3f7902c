import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Readable, Transform } from 'node:stream';

/** What an upload moved: its bytes and their SHA-256, computed while they streamed. */
export interface UploadResult {
  bytes: number;
  sha256: string;
}

/**
 * A stream of a local file that hashes and counts the bytes its consumer pulls; `result()` once it has ended.
 * A Transform rather than a 'data' listener, so nothing flows before the consumer reads.
 */
export function hashedReadStream(file: string, options: { readBytes?: number; start?: number; onBytes?: (bytes: number) => void } = {}): { stream: Readable; result: () => UploadResult } {
  const hash = createHash('sha256');
  let bytes = 0;
  const source = createReadStream(file, { highWaterMark: options.readBytes, start: options.start });
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      bytes += chunk.length;
      options.onBytes?.(chunk.length);
      done(null, chunk);
    },
  });
  source.on('error', (err) => stream.destroy(err));
  // A consumer that gives up half way (a failed attempt) destroys the stream: the file must not stay open.
  stream.on('close', () => source.destroy());
  source.pipe(stream);
  let digest: string | undefined;
  return { stream, result: () => ({ bytes, sha256: (digest ??= hash.digest('hex')) }) };
}

/** Reads a whole file once, for its size and SHA-256 (beside a transfer that reads it out of order). */
export async function hashFile(file: string): Promise<UploadResult> {
  // Large reads: a 64 KiB default costs a syscall and a buffer per 64 KiB, which shows on multi-GiB outputs.
  const { stream, result } = hashedReadStream(file, { readBytes: 4 * 1024 * 1024 });
  for await (const _chunk of stream) {
    // drained only for the hash
  }
  return result();
}

/** The stream itself, or one that reports each chunk's length to `onBytes` as the consumer pulls it. */
export function countedStream(stream: Readable, onBytes: ((bytes: number) => void) | undefined): Readable {
  if (!onBytes) return stream;
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      onBytes(chunk.length);
      done(null, chunk);
    },
  });
  stream.on('error', (err) => counted.destroy(err));
  counted.on('close', () => stream.destroy());
  return stream.pipe(counted);
}

import { promises as fs, write } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/**
 * Streams `body` into an open file at `position` (parts of one file write concurrently through one descriptor).
 * `onWritten` counts only bytes that reached the file, so a retry can resume exactly there.
 */
export async function writeAt(
  body: Readable,
  fd: number,
  position: number,
  onWritten: (bytes: number) => void,
  signal?: AbortSignal,
  beforeWrite?: (nextEnd: number) => Error | undefined,
): Promise<void> {
  const sink = positionalWriter(fd, position, onWritten, beforeWrite);
  try {
    await pipeline(body, sink.stream, { signal });
  } finally {
    await sink.settled();
  }
}

/**
 * A Writable that writes into an open file from `position` on, counting through `onWritten` only bytes that
 * reached the file; `beforeWrite` may refuse a chunk that would end at `nextEnd`. A failed stream is destroyed
 * while a write may still be in flight: `settled()` waits for it, so a retry never overlaps the attempt before
 * it and counts from the right place.
 */
export function positionalWriter(
  fd: number,
  position: number,
  onWritten: (bytes: number) => void,
  beforeWrite?: (nextEnd: number) => Error | undefined,
): { stream: Writable; settled: () => Promise<void> } {
  let at = position;
  let inFlight = Promise.resolve();
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      const refused = beforeWrite?.(at + chunk.length);
      if (refused) return done(refused);
      inFlight = new Promise<void>((resolve) => {
        const from = (offset: number): void =>
          write(fd, chunk, offset, chunk.length - offset, at, (err, written) => {
            if (err) {
              resolve();
              return done(err);
            }
            at += written;
            onWritten(written);
            if (offset + written < chunk.length) return from(offset + written);
            resolve();
            done();
          });
        from(0);
      });
    },
  });
  return { stream, settled: () => inFlight };
}

/**
 * Runs `fill` on `<destination>.part` opened for writing; on success the part file becomes `destination`
 * (readers never see half a file), on failure it is removed. Resolves to what `fill` returns.
 */
export async function intoPartFile<T>(destination: string, fill: (file: FileHandle, partPath: string) => Promise<T>): Promise<T> {
  const partPath = `${destination}.part`;
  const file = await fs.open(partPath, 'w');
  try {
    const result = await fill(file, partPath);
    await file.close();
    await fs.rename(partPath, destination);
    return result;
  } catch (err) {
    await file.close().catch(() => undefined);
    await fs.rm(partPath, { force: true });
    throw err;
  }
}

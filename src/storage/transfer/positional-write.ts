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
  let at = position;
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      const refused = beforeWrite?.(at + chunk.length);
      if (refused) return done(refused);
      const from = (offset: number): void =>
        write(fd, chunk, offset, chunk.length - offset, at, (err, written) => {
          if (err) return done(err);
          at += written;
          onWritten(written);
          if (offset + written < chunk.length) from(offset + written);
          else done();
        });
      from(0);
    },
  });
  await pipeline(body, sink, { signal });
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

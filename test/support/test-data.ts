// Large test files with a known digest, and digests of what comes back: shared by the round-trip suites.
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import type { Readable } from 'node:stream';

/** Writes `size` bytes of a position-dependent pattern to `file`; resolves to their SHA-256. */
export async function writeSource(file: string, size: number): Promise<string> {
  const hash = createHash('sha256');
  const out = createWriteStream(file);
  const chunk = Buffer.alloc(4 * 1024 * 1024);
  for (let written = 0, n = 0; written < size; written += chunk.length, n++) {
    for (let i = 0; i < chunk.length; i += 4096) chunk.writeUInt32LE((n * 1024 + i) >>> 0, i);
    hash.update(chunk);
    if (!out.write(chunk)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
  }
  await new Promise<void>((resolve) => out.end(() => resolve()));
  return hash.digest('hex');
}

export async function hashStream(stream: Readable): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

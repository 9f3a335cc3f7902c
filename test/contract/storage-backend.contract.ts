// The StorageBackend contract: every scheme's backend runs this suite against its real server.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { DomainError } from '../../src/domain/domain-error';
import type { StorageBackend } from '../../src/storage/storage-backend';

export interface StorageHarness {
  backend: StorageBackend;
  /** URL of an object path, e.g. urlFor('a/b.bin'). */
  urlFor(relativePath: string): string;
  /** Puts bytes at an object path on the server, bypassing the backend. */
  seed(relativePath: string, data: Buffer): Promise<void>;
  /** Reads bytes of an object path from the server, bypassing the backend. */
  read(relativePath: string): Promise<Buffer>;
  cleanup(): Promise<void>;
  /** Bytes of the pieces the backend cuts a stream into (multipart part, iRODS chunk); default 1 MiB. */
  streamPartBytes?: number;
  /**
   * Whether a failed stream upload may leave a partial object (documented for HTTP: what a PUT that broke off
   * leaves is the server's business). Otherwise nothing may be left at the URL.
   */
  mayKeepPartialUploads?: boolean;
}

/** A stream of `data` in chunks of varied size; `beforeChunk` runs before each chunk with the offset reached. */
function streamOf(data: Buffer, beforeChunk?: (offset: number) => Promise<void> | void): Readable {
  return Readable.from(
    (async function* () {
      for (let at = 0, n = 0; at < data.length; n++) {
        await beforeChunk?.(at);
        const length = [65536, 1000, 200_000, 7][n % 4];
        yield data.subarray(at, at + length);
        at += length;
      }
    })(),
  );
}

const patterned = (length: number) => {
  const data = Buffer.alloc(length);
  for (let i = 0; i < length; i++) data[i] = (i * 31 + (i >> 13)) % 251;
  return data;
};

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

export function describeStorageBackendContract(name: string, open: () => Promise<StorageHarness>): void {
  describe(`StorageBackend contract: ${name}`, () => {
    let harness: StorageHarness;
    let local: string;

    beforeEach(async () => {
      harness = await open();
      local = mkdtempSync(path.join(os.tmpdir(), 'tesp-storage-local-'));
    });

    afterEach(async () => {
      await harness.cleanup();
      rmSync(local, { recursive: true, force: true });
    });

    it('downloads an object byte for byte', async () => {
      const data = Buffer.from(Array.from({ length: 3 * 1024 * 1024 + 17 }, (_, i) => (i * 31) % 251));
      await harness.seed('in/data.bin', data);
      const destination = path.join(local, 'data.bin');
      const bytes = await harness.backend.download(harness.urlFor('in/data.bin'), destination);
      expect(bytes).toBe(data.length);
      expect(sha256(readFileSync(destination))).toBe(sha256(data));
    });

    it('uploads a file byte for byte', async () => {
      const data = Buffer.from('uploaded ✓\n'.repeat(5000));
      const source = path.join(local, 'up.txt');
      writeFileSync(source, data);
      expect(await harness.backend.upload(source, harness.urlFor('out/nested/up.txt'))).toEqual({ bytes: data.length, sha256: sha256(data) });
      expect(sha256(await harness.read('out/nested/up.txt'))).toBe(sha256(data));
    });

    it('reports the type and size of an object', async () => {
      await harness.seed('stat/one.txt', Buffer.from('12345'));
      expect(await harness.backend.stat(harness.urlFor('stat/one.txt'))).toMatchObject({ type: 'FILE', size: 5 });
    });

    it('fails with a domain error naming the object when it is missing', async () => {
      const url = harness.urlFor('missing/none.txt');
      const attempt = harness.backend.download(url, path.join(local, 'none.txt'));
      await expect(attempt).rejects.toBeInstanceOf(DomainError);
      await expect(attempt).rejects.toThrow(/none\.txt/);
    });

    /** Nothing at the URL after a failed stream upload, or (where documented) not the whole stream. */
    const expectNoCompleteObject = async (rel: string, whole: Buffer) => {
      const left = await harness.read(rel).then(
        (bytes) => bytes,
        () => undefined,
      );
      if (harness.mayKeepPartialUploads) expect(left === undefined || sha256(left) !== sha256(whole)).toBe(true);
      else expect(left).toBeUndefined();
    };

    it('uploads an empty stream', async () => {
      const result = await harness.backend.uploadStream(Readable.from([]), harness.urlFor('stream/empty.bin'));
      expect(result).toEqual({ bytes: 0, sha256: sha256(Buffer.alloc(0)) });
      expect((await harness.read('stream/empty.bin')).length).toBe(0);
      expect(await harness.backend.download(harness.urlFor('stream/empty.bin'), path.join(local, 'empty.bin'))).toBe(0);
    });

    for (const announced of [true, false]) {
      it(`uploads a stream of several parts byte for byte (size ${announced ? 'announced' : 'unknown'})`, async () => {
        const part = harness.streamPartBytes ?? 1024 * 1024;
        const data = patterned(3 * part + 4321);
        let progress = 0;
        const url = harness.urlFor('stream/nested/parts.bin');
        const result = await harness.backend.uploadStream(streamOf(data), url, { size: announced ? data.length : undefined, onProgress: (n) => (progress += n) });
        expect(result).toEqual({ bytes: data.length, sha256: sha256(data) });
        expect(progress).toBe(data.length);
        expect(sha256(await harness.read('stream/nested/parts.bin'))).toBe(sha256(data));
        const destination = path.join(local, 'parts.bin');
        expect(await harness.backend.download(url, destination)).toBe(data.length);
        expect(sha256(readFileSync(destination))).toBe(sha256(data));
      });
    }

    it('reads an object as a stream, byte for byte', async () => {
      const data = patterned(3 * 1024 * 1024 + 17);
      await harness.seed('in/stream.bin', data);
      let progress = 0;
      const stream = await harness.backend.openRead(harness.urlFor('in/stream.bin'), { onProgress: (n) => (progress += n) });
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      expect(sha256(Buffer.concat(chunks))).toBe(sha256(data));
      expect(progress).toBe(data.length);
    });

    it('refuses to open a missing object for reading, naming it', async () => {
      const attempt = harness.backend.openRead(harness.urlFor('missing/none.bin'));
      await expect(attempt).rejects.toBeInstanceOf(DomainError);
      await expect(attempt).rejects.toThrow(/none\.bin/);
    });

    it('stops a stream upload when aborted, leaving no complete object, and releases the stream', async () => {
      const part = harness.streamPartBytes ?? 1024 * 1024;
      const data = patterned(3 * part + 99);
      const controller = new AbortController();
      const source = streamOf(data, async (offset) => {
        if (offset < 1.5 * part) return;
        controller.abort();
        await pause(20);
      });
      const attempt = harness.backend.uploadStream(source, harness.urlFor('stream/aborted.bin'), { signal: controller.signal });
      await expect(attempt).rejects.toThrow();
      expect(source.destroyed).toBe(true);
      await expectNoCompleteObject('stream/aborted.bin', data);
    });

    it('fails a stream upload with the error of a source that breaks mid-way, and reports no success', async () => {
      const part = harness.streamPartBytes ?? 1024 * 1024;
      const data = patterned(2 * part + 5);
      const broken = new Error('the source broke on purpose');
      const source = streamOf(data, (offset) => {
        if (offset >= 1.2 * part) throw broken;
      });
      await expect(harness.backend.uploadStream(source, harness.urlFor('stream/broken.bin'))).rejects.toBe(broken);
      await expectNoCompleteObject('stream/broken.bin', data);
    });

    it('refuses a stream that ends before its announced size', async () => {
      const data = patterned(100_000);
      const attempt = harness.backend.uploadStream(streamOf(data), harness.urlFor('stream/short.bin'), { size: data.length + 10 });
      await expect(attempt).rejects.toBeInstanceOf(DomainError);
      await expectNoCompleteObject('stream/short.bin', Buffer.concat([data, Buffer.alloc(10)]));
    });

    it('stops when the transfer is aborted', async () => {
      await harness.seed('abort/x.bin', Buffer.alloc(1024 * 1024, 1));
      const controller = new AbortController();
      controller.abort();
      await expect(harness.backend.download(harness.urlFor('abort/x.bin'), path.join(local, 'x.bin'), { signal: controller.signal })).rejects.toThrow();
    });
  });
}

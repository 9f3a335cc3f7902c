// The StorageBackend contract: every scheme's backend runs this suite against its real server.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
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
}

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

    it('stops when the transfer is aborted', async () => {
      await harness.seed('abort/x.bin', Buffer.alloc(1024 * 1024, 1));
      const controller = new AbortController();
      controller.abort();
      await expect(harness.backend.download(harness.urlFor('abort/x.bin'), path.join(local, 'x.bin'), { signal: controller.signal })).rejects.toThrow();
    });
  });
}

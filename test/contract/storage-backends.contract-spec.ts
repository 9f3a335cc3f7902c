import { mkdirSync, mkdtempSync, promises as fs, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { FileStorageBackend } from '../../src/storage/file/file-storage.backend';
import { HttpStorageBackend } from '../../src/storage/http/http-storage.backend';
import { httpTestSettings, startHttpFileServer } from '../support/http-file-server';
import { describeStorageBackendContract } from './storage-backend.contract';

/** A file-store harness; `urlFor` decides whether objects are named by file:// URL or plain path. */
function fileHarness(urlFor: (root: string, rel: string) => string) {
  return async () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'tesp-file-store-'));
    return {
      backend: new FileStorageBackend([root]),
      urlFor: (rel: string) => urlFor(root, rel),
      seed: async (rel: string, data: Buffer) => {
        mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
        await fs.writeFile(path.join(root, rel), data);
      },
      read: (rel: string) => fs.readFile(path.join(root, rel)),
      cleanup: async () => rmSync(root, { recursive: true, force: true }),
    };
  };
}

describeStorageBackendContract('file', fileHarness((root, rel) => pathToFileURL(path.join(root, rel)).toString()));
describeStorageBackendContract('file (plain paths)', fileHarness((root, rel) => path.join(root, rel)));

describeStorageBackendContract('http', async () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'tesp-http-store-'));
  const server = await startHttpFileServer(root);
  const backend = new HttpStorageBackend(httpTestSettings);
  return {
    backend,
    mayKeepPartialUploads: true,
    urlFor: (rel) => `${server.base}/${rel}`,
    seed: async (rel, data) => {
      mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
      await fs.writeFile(path.join(root, rel), data);
    },
    read: (rel) => fs.readFile(path.join(root, rel)),
    cleanup: async () => {
      await backend.close();
      await server.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
});

import type { Readable } from 'node:stream';
import type { TransferOptions, UploadStreamOptions } from '../storage-backend';
import type { StorageRegistry } from '../storage-registry';
import type { UploadResult } from './hashed-read';

// Moving bytes between a stream (a remote runner's HTTP route) and a task's storage URL without a local file:
// the backend for the URL's scheme does the work, with its own retries and memory bound.

/** Writes `source` to `url`, consuming it once; the bytes taken and their SHA-256. */
export async function copyToStorage(registry: StorageRegistry, source: Readable, url: string, options: UploadStreamOptions = {}): Promise<UploadResult> {
  let backend;
  try {
    backend = registry.forUrl(url);
  } catch (err) {
    // Nothing will read the stream: release it rather than leave its producer waiting.
    source.destroy();
    throw err;
  }
  return backend.uploadStream(source, url, options);
}

/** A stream of the object at `url`, opened (with the backend's retries) before this resolves. */
export async function openFromStorage(registry: StorageRegistry, url: string, options: TransferOptions = {}): Promise<Readable> {
  return registry.forUrl(url).openRead(url, options);
}

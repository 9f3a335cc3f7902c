import type { Readable } from 'node:stream';
import type { UploadResult } from './transfer/hashed-read';

// The storage port, one implementation per URL scheme family: file/ (file:// and plain paths), http/
// (http, https), ftp/, sftp/, s3/ and irods/. Adapters turn library errors into DomainErrors
// (STORAGE_FAILED with `transient` set when a retry may help, STORAGE_DENIED for policy refusals).

export const STORAGE_BACKENDS = Symbol('STORAGE_BACKENDS');

export interface ObjectInfo {
  type: 'FILE' | 'DIRECTORY';
  /** Bytes, when the location reports it. */
  size?: number;
}

export interface ListedObject {
  /** URL of the object, usable with download(). */
  url: string;
  /** Path relative to the listed directory, '/'-separated. */
  relativePath: string;
  size?: number;
}

export interface TransferOptions {
  signal?: AbortSignal;
  /** Called with the bytes that reached their destination since the last call (progress of this transfer). */
  onProgress?: (bytes: number) => void;
}

export interface UploadStreamOptions extends TransferOptions {
  /** The stream's length when known: sent ahead where the protocol wants it (Content-Length), checked at the end. */
  size?: number;
}

export interface StorageBackend {
  /** URL schemes served, lower case, without ':' (e.g. ['http', 'https']). Plain paths count as 'file'. */
  readonly schemes: readonly string[];

  /** Locations reported in service-info `storage` (e.g. 'file:///data', 'https://'). */
  locations(): string[];

  /** Why a task's URL cannot be used (checked when the task is created), or undefined; the registry then requires a host. */
  problemWith?(url: string): Promise<string | undefined>;

  stat(url: string, options?: TransferOptions): Promise<ObjectInfo>;

  /** Every file under a directory URL, recursively. */
  list(url: string, options?: TransferOptions): Promise<ListedObject[]>;

  /** Streams the object at `url` into the local file `destination` (parents exist). Resolves to the bytes written. */
  download(url: string, destination: string, options?: TransferOptions): Promise<number>;

  /** Streams the local file `source` to `url`. Resolves to the bytes sent and their SHA-256. */
  upload(source: string, url: string, options?: TransferOptions): Promise<UploadResult>;

  /**
   * A stream of the object's bytes. Rejects when the object cannot be opened (it is opened, with the backend's
   * retries, before this resolves); a connection that breaks later is resumed where the protocol allows, otherwise
   * the stream errors. `onProgress` counts the bytes the stream delivers; `signal` destroys it.
   */
  openRead(url: string, options?: TransferOptions): Promise<Readable>;

  /**
   * Writes the stream `source` to `url`, consuming it once, with memory bounded whatever its length. Resolves to
   * the bytes taken from the stream and their SHA-256. A stream cannot be read twice: only a failure before the
   * first byte, or of a piece the backend still holds in memory, is retried; any other failure rejects (a failure
   * of `source` itself with the source's own error) and the source is destroyed.
   */
  uploadStream(source: Readable, url: string, options?: UploadStreamOptions): Promise<UploadResult>;
}

import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Agent } from 'undici';
import { DomainError, ErrorCode } from '../../domain/domain-error';
import { redactUrl } from '../../common/redact';
import type { ListedObject, ObjectInfo, StorageBackend, TransferOptions, UploadStreamOptions } from '../storage-backend';
import { hashFile, UploadResult } from '../transfer/hashed-read';
import { intoPartFile, writeAt } from '../transfer/positional-write';
import { resumableRead } from '../transfer/resumable-read';
import { SinglePassSource, unrepeatable } from '../transfer/single-pass-source';
import { planParts, RetryPolicy, transferParts, withRetries } from '../transfer/transfer-engine';
import { IrodsCall, IrodsHttpClient, IrodsLimits, IrodsRestartRequired } from './irods-http-client';
import { parseIrodsAuth, parseIrodsZones } from '../../config/irods-zone-entries';

export interface IrodsStorageSettings {
  /** "zone=<HTTP API base URL with its version>" entries. */
  zones: readonly string[];
  /** "zone=user:password" entries, exchanged for bearer tokens. */
  credentials: readonly string[];
  /** "zone=token" entries: OpenID Connect access tokens sent as they are. */
  access_tokens: readonly string[];
  write_streams: number;
  chunk_size_mb: number;
  verify_checksums: boolean;
  idle_timeout_ms: number;
  retries: number;
  retry_base_ms: number;
  retry_max_ms: number;
}

export interface IrodsReadSettings {
  partBytes: number;
  parallel: number;
}

/** Room left in a request body for framing: a chunk must never reach the server's limit (it would hang up). */
const BODY_MARGIN = 64 * 1024;
/** A corrupted upload is sent once more before the task fails. */
const CHECKSUM_ATTEMPTS = 2;

interface IrodsTarget {
  zone: string;
  /** Logical path, /<zone>/... */
  path: string;
  client: IrodsHttpClient;
}

/**
 * irods://<zone>/<path> through the iRODS HTTP API. Downloads are parallel ranged reads on the transfer engine;
 * uploads are one parallel write (each worker owns one stream, so no stream is used twice at once), always shut
 * down, then checked by size and by the checksum the server calculates.
 */
export class IrodsStorageBackend implements StorageBackend {
  readonly schemes = ['irods'] as const;
  private readonly clients = new Map<string, IrodsHttpClient>();
  private readonly agent: Agent;
  private readonly retry: RetryPolicy;

  constructor(
    private readonly settings: IrodsStorageSettings,
    private readonly reads: IrodsReadSettings,
  ) {
    this.agent = new Agent({ bodyTimeout: settings.idle_timeout_ms, headersTimeout: settings.idle_timeout_ms, connections: 32 });
    this.retry = { retries: settings.retries, baseMs: settings.retry_base_ms, maxMs: settings.retry_max_ms };
    const auth = parseIrodsAuth(settings.credentials, settings.access_tokens);
    for (const [zone, base] of parseIrodsZones(settings.zones)) this.clients.set(zone, new IrodsHttpClient(zone, base, auth.get(zone), this.agent));
  }

  locations(): string[] {
    return [...this.clients.keys()].map((zone) => `irods://${zone}`);
  }

  /** Why a task's irods URL cannot be used, or undefined. */
  async problemWith(url: string): Promise<string | undefined> {
    try {
      this.parse(url);
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  async stat(url: string, options: TransferOptions = {}): Promise<ObjectInfo> {
    const target = this.parse(url);
    const call = { subject: url, signal: options.signal, accept: [-171000] };
    const object = await this.retrying(options, () => target.client.get('data-objects', { op: 'stat', lpath: target.path }, call));
    if (object.irods_response?.status_code === 0) return { type: 'FILE', size: Number(object.size) };
    await this.retrying(options, () => target.client.get('collections', { op: 'stat', lpath: target.path }, { subject: url, signal: options.signal }));
    return { type: 'DIRECTORY' };
  }

  /** Every data object below a collection, by GenQuery pages (sizes come with the rows). */
  async list(url: string, options: TransferOptions = {}): Promise<ListedObject[]> {
    const target = this.parse(url);
    if (target.path.includes("'")) throw new DomainError(ErrorCode.InvalidArgument, `${url}: a collection name with a quote cannot be listed through GenQuery`);
    const call: IrodsCall = { subject: url, signal: options.signal };
    await this.retrying(options, () => target.client.get('collections', { op: 'stat', lpath: target.path }, call));
    const limits = await this.retrying(options, () => target.client.info(call));
    const out: ListedObject[] = [];
    // Two queries: `like '<dir>/%'` alone would miss the collection's own objects, and `like '<dir>%'` would match <dir>2.
    for (const condition of [`= '${target.path}'`, `like '${target.path}/%'`]) {
      const query = `select COLL_NAME, DATA_NAME, DATA_SIZE, DATA_CHECKSUM where COLL_NAME ${condition}`;
      for (let offset = 0; ; ) {
        const page = await this.retrying(options, () =>
          target.client.get('query', { op: 'execute_genquery', query, offset: String(offset), count: String(limits.maxRows) }, call),
        );
        const rows = Array.isArray(page.rows) ? (page.rows as string[][]) : [];
        for (const [coll, name, size] of rows) {
          // `_` and `%` in a name are wildcards to `like`: keep only what is really below the collection.
          if (coll !== target.path && !coll.startsWith(`${target.path}/`)) continue;
          const relativePath = `${coll.slice(target.path.length + 1)}${coll === target.path ? '' : '/'}${name}`;
          out.push({ url: urlOf(`${coll}/${name}`), relativePath, size: Number(size) });
        }
        if (rows.length < limits.maxRows) break;
        offset += rows.length;
      }
    }
    return out.sort((a, b) => (a.relativePath < b.relativePath ? -1 : 1));
  }

  async download(url: string, destination: string, options: TransferOptions = {}): Promise<number> {
    const target = this.parse(url);
    const stat = await this.retrying(options, () => target.client.get('data-objects', { op: 'stat', lpath: target.path }, { subject: url, signal: options.signal }));
    const size = Number(stat.size);
    await intoPartFile(destination, async (file) => {
      if (size === 0) return;
      await transferParts(
        planParts(size, this.reads.partBytes),
        async (part, progress, signal) => {
          const start = part.offset + progress.done;
          const count = part.length - progress.done;
          const end = part.offset + part.length;
          const body = await target.client.read({ op: 'read', lpath: target.path, offset: String(start), count: String(count) }, { subject: url, signal });
          const overrun = (nextEnd: number) => (nextEnd > end ? new DomainError(ErrorCode.StorageFailed, `${url}: the server sent more than the ${count} bytes asked for`) : undefined);
          try {
            await writeAt(body, file.fd, start, (n) => (progress.done += n), signal, overrun);
          } catch (err) {
            if (err instanceof DomainError) throw err;
            throw new DomainError(ErrorCode.StorageFailed, `${url}: read at ${start} broke off: ${(err as Error).message}`, !signal.aborted);
          }
          // A read that fails inside iRODS just stops its chunked answer early: count what arrived.
          if (progress.done < part.length) {
            throw new DomainError(ErrorCode.StorageFailed, `${url}: read at ${part.offset} ended after ${progress.done} of ${part.length} bytes`, true);
          }
        },
        { concurrency: this.reads.parallel, retry: this.retry, signal: options.signal, onProgress: options.onProgress },
      );
    });
    const checksum = typeof stat.checksum === 'string' ? stat.checksum : '';
    if (this.settings.verify_checksums && checksum) {
      const local = await localChecksum(destination, checksum);
      if (local !== undefined && local !== checksum) {
        await fs.rm(destination, { force: true });
        throw new DomainError(ErrorCode.StorageFailed, `${url}: checksum mismatch after download (iRODS ${checksum}, received ${local})`);
      }
    }
    return size;
  }

  async upload(source: string, url: string, options: TransferOptions = {}): Promise<UploadResult> {
    const target = this.parse(url);
    const call: IrodsCall = { subject: url, signal: options.signal };
    const limits = await this.retrying(options, () => target.client.info(call));
    const hashed = hashFile(source);
    hashed.catch(() => undefined);
    const size = (await fs.stat(source)).size;
    const parent = target.path.slice(0, target.path.lastIndexOf('/'));
    await this.retrying(options, () => target.client.post('collections', { op: 'create', lpath: parent, 'create-intermediates': '1' }, call));
    const chunk = Math.max(1, Math.min(this.settings.chunk_size_mb * 1024 * 1024, limits.maxBodyBytes - BODY_MARGIN));
    for (let restarts = 0, corrupted = 0; ; ) {
      try {
        if (size <= chunk) await this.writeWhole(target, source, size, limits, call, options);
        else await this.writeParallel(target, source, size, chunk, limits, call, options);
        const local = await hashed;
        await this.verify(target, url, local, size, options, (remote) => localChecksum(source, remote));
        return local;
      } catch (err) {
        const mismatch = err instanceof ChecksumMismatch && ++corrupted < CHECKSUM_ATTEMPTS;
        const restart = err instanceof IrodsRestartRequired && restarts++ < this.retry.retries;
        if ((!mismatch && !restart) || options.signal?.aborted) throw err;
      }
    }
  }

  /** A file that fits one request: one write that truncates, retried as a whole (a write at an offset is idempotent). */
  private async writeWhole(target: IrodsTarget, source: string, size: number, limits: IrodsLimits, call: IrodsCall, options: TransferOptions): Promise<void> {
    const bytes = await readRange(source, 0, size);
    await this.retrying(options, () => this.write(target, { lpath: target.path, truncate: '1' }, bytes, limits, call));
    options.onProgress?.(size);
  }

  /**
   * parallel_write_init, then each worker writes its chunks on its own stream (so 429 cannot happen and no stream
   * is used twice at once), and parallel_write_shutdown whatever happened: an open handle leaks on the server.
   */
  private async writeParallel(target: IrodsTarget, source: string, size: number, chunk: number, limits: IrodsLimits, call: IrodsCall, options: TransferOptions): Promise<void> {
    const parts = planParts(size, chunk);
    const streams = Math.max(1, Math.min(this.settings.write_streams, limits.streamsPerHandle, parts.length));
    const init = await this.retrying(options, () =>
      target.client.post('data-objects', { op: 'parallel_write_init', lpath: target.path, 'stream-count': String(streams), truncate: '1' }, call),
    );
    const handle = String(init.parallel_write_handle ?? '');
    if (!handle) throw new DomainError(ErrorCode.StorageFailed, `${call.subject}: parallel_write_init returned no handle`);
    const file = await fs.open(source, 'r');
    const buffers: Buffer[] = [];
    try {
      await transferParts(
        parts,
        async (part, progress, signal, worker) => {
          const buffer = (buffers[worker] ??= Buffer.allocUnsafe(chunk));
          const { bytesRead } = await file.read(buffer, 0, part.length, part.offset);
          if (bytesRead !== part.length) throw new DomainError(ErrorCode.StorageFailed, `${call.subject}: ${source} changed size while uploading`);
          const params = { 'parallel-write-handle': handle, 'stream-index': String(worker), offset: String(part.offset) };
          await this.write(target, params, buffer.subarray(0, part.length), limits, { ...call, signal });
          progress.done = part.length;
        },
        { concurrency: streams, retry: this.retry, signal: options.signal, onProgress: options.onProgress },
      );
    } finally {
      await file.close();
      // No signal: the handle must be closed even when the task was canceled.
      await withRetries(this.retry, undefined, () =>
        target.client.post('data-objects', { op: 'parallel_write_shutdown', 'parallel-write-handle': handle }, { subject: call.subject }),
      );
    }
  }

  private write(target: IrodsTarget, params: Record<string, string>, bytes: Buffer, limits: IrodsLimits, call: IrodsCall) {
    if (limits.headerWrite) return target.client.headerWrite(params, bytes, call);
    return target.client.post('data-objects', { op: 'write', ...params, bytes }, call);
  }

  /** The object's size as the catalog sees it, then the checksum iRODS calculates against the one we streamed. */
  private async verify(target: IrodsTarget, url: string, local: UploadResult, size: number, options: TransferOptions, otherChecksum: (remote: string) => Promise<string | undefined>): Promise<void> {
    const call = { subject: url, signal: options.signal };
    const stat = await this.retrying(options, () => target.client.get('data-objects', { op: 'stat', lpath: target.path }, call));
    if (Number(stat.size) !== size) throw new DomainError(ErrorCode.StorageFailed, `${url}: iRODS reports ${String(stat.size)} bytes after uploading ${size}`);
    if (!this.settings.verify_checksums) return;
    const answer = await this.retrying(options, () => target.client.post('data-objects', { op: 'calculate_checksum', lpath: target.path, force: '1' }, call));
    const remote = typeof answer.checksum === 'string' ? answer.checksum : '';
    const expected = remote.startsWith('sha2:') ? `sha2:${Buffer.from(local.sha256, 'hex').toString('base64')}` : undefined;
    const computed = expected ?? (await otherChecksum(remote));
    if (computed !== undefined && computed !== remote) throw new ChecksumMismatch(ErrorCode.StorageFailed, `${url}: checksum mismatch after upload (iRODS ${remote}, sent ${computed})`);
  }

  /**
   * Ranged reads of at most one part each, one after the other, each resumed at the offset reached; with
   * verify_checksums the bytes are hashed on the way and a mismatch with the catalog's checksum fails the stream
   * instead of ending it.
   */
  async openRead(url: string, options: TransferOptions = {}): Promise<Readable> {
    const target = this.parse(url);
    const stat = await this.retrying(options, () => target.client.get('data-objects', { op: 'stat', lpath: target.path }, { subject: url, signal: options.signal }));
    const size = Number(stat.size);
    const checksum = this.settings.verify_checksums && typeof stat.checksum === 'string' ? stat.checksum : '';
    const kind = checksum.startsWith('sha2:') ? 'sha256' : /^[0-9a-f]{32}$/i.test(checksum) ? 'md5' : undefined;
    const hash = kind ? createHash(kind) : undefined;
    return resumableRead(
      async (offset, signal) => {
        if (size === 0) return Readable.from([]);
        const count = Math.min(this.reads.partBytes, size - offset);
        return target.client.read({ op: 'read', lpath: target.path, offset: String(offset), count: String(count) }, { subject: url, signal });
      },
      {
        retry: this.retry,
        signal: options.signal,
        subject: url,
        total: () => size,
        onChunk: (chunk) => {
          hash?.update(chunk);
          options.onProgress?.(chunk.length);
        },
        atEnd: () => {
          if (!hash) return undefined;
          const digest = hash.digest();
          const received = kind === 'sha256' ? `sha2:${digest.toString('base64')}` : digest.toString('hex');
          return received === checksum ? undefined : new DomainError(ErrorCode.StorageFailed, `${url}: checksum mismatch after download (iRODS ${checksum}, received ${received})`);
        },
      },
    );
  }

  /**
   * Chunks cut from the stream in order: a stream that fits one chunk is one truncating write, a longer one a
   * parallel write whose workers each hold one chunk at a time (write_streams × chunk bytes at most), each chunk
   * retried from memory. Then size and checksum are checked as for upload. What cannot be repeated without the
   * bytes (a corrupted upload, a server asking to restart the transfer) fails, and the partial object is removed.
   */
  async uploadStream(source: Readable, url: string, options: UploadStreamOptions = {}): Promise<UploadResult> {
    const target = this.parse(url);
    const call: IrodsCall = { subject: url, signal: options.signal };
    // MD5 zones compare MD5: computed beside the SHA-256 as the bytes pass, since they cannot be read again.
    const input = new SinglePassSource(source, undefined, this.settings.verify_checksums ? 'md5' : undefined);
    let writing = false;
    try {
      const limits = await this.retrying(options, () => target.client.info(call));
      const parent = target.path.slice(0, target.path.lastIndexOf('/'));
      await this.retrying(options, () => target.client.post('collections', { op: 'create', lpath: parent, 'create-intermediates': '1' }, call));
      const chunk = Math.max(1, Math.min(this.settings.chunk_size_mb * 1024 * 1024, limits.maxBodyBytes - BODY_MARGIN));
      const first = await input.readUpTo(chunk);
      writing = true;
      if (!(await input.hasMore())) {
        const wrong = input.sizeMismatch(options.size, url);
        if (wrong) throw wrong;
        await this.retrying(options, () => this.write(target, { lpath: target.path, truncate: '1' }, first, limits, call));
        options.onProgress?.(first.length);
      } else {
        await this.writeParallelFromStream(target, input, first, chunk, limits, call, options);
        const wrong = input.sizeMismatch(options.size, url);
        if (wrong) throw wrong;
      }
      const local = input.result();
      const md5 = input.extraDigest()?.toString('hex');
      await this.verify(target, url, local, local.bytes, options, async (remote) => (/^[0-9a-f]{32}$/i.test(remote) ? md5 : undefined));
      return local;
    } catch (err) {
      input.discard();
      if (writing) await this.removeQuietly(target, url);
      if (input.sourceError !== undefined) throw input.sourceError;
      if (err instanceof ChecksumMismatch) throw new DomainError(ErrorCode.StorageFailed, `${err.message}; a stream cannot be sent again`);
      if (err instanceof IrodsRestartRequired) throw new DomainError(ErrorCode.StorageFailed, `${err.message}; the server asked to restart the transfer, which a stream cannot do`);
      throw err;
    }
  }

  /** parallel_write_init, workers that each cut the next chunk and write it on their own stream, and shutdown. */
  private async writeParallelFromStream(
    target: IrodsTarget,
    input: SinglePassSource,
    first: Buffer,
    chunk: number,
    limits: IrodsLimits,
    call: IrodsCall,
    options: UploadStreamOptions,
  ): Promise<void> {
    const chunks = options.size !== undefined ? Math.ceil(options.size / chunk) : Infinity;
    const streams = Math.max(1, Math.min(this.settings.write_streams, limits.streamsPerHandle, chunks));
    const init = await this.retrying(options, () =>
      target.client.post('data-objects', { op: 'parallel_write_init', lpath: target.path, 'stream-count': String(streams), truncate: '1' }, call),
    );
    const handle = String(init.parallel_write_handle ?? '');
    if (!handle) throw new DomainError(ErrorCode.StorageFailed, `${call.subject}: parallel_write_init returned no handle`);
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    let pending: Buffer | undefined = first;
    let offset = 0;
    // Chunks are cut in stream order: one worker reads at a time.
    let reading: Promise<unknown> = Promise.resolve();
    const take = (): Promise<{ offset: number; bytes: Buffer } | undefined> => {
      const next = reading.then(async () => {
        const bytes = pending ?? (await input.readUpTo(chunk));
        pending = undefined;
        if (bytes.length === 0) return undefined;
        const at = offset;
        offset += bytes.length;
        return { offset: at, bytes };
      });
      reading = next.catch(() => undefined);
      return next;
    };
    let failure: unknown;
    const worker = async (streamIndex: number) => {
      while (failure === undefined && !stop.signal.aborted) {
        const piece = await take();
        if (!piece) return;
        const params = { 'parallel-write-handle': handle, 'stream-index': String(streamIndex), offset: String(piece.offset) };
        try {
          await withRetries(this.retry, stop.signal, () => this.write(target, params, piece.bytes, limits, { ...call, signal: stop.signal }));
        } catch (err) {
          throw unrepeatable(input, call.subject, err);
        }
        options.onProgress?.(piece.bytes.length);
      }
    };
    try {
      await Promise.all(
        Array.from({ length: streams }, (_, index) =>
          worker(index).catch((err) => {
            failure ??= err;
            stop.abort();
          }),
        ),
      );
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      // No signal: the handle must be closed even when the task was canceled.
      await withRetries(this.retry, undefined, () =>
        target.client.post('data-objects', { op: 'parallel_write_shutdown', 'parallel-write-handle': handle }, { subject: call.subject }),
      );
    }
    if (failure !== undefined) throw failure;
  }

  /** Removes what a failed stream upload left (no trash, no signal); a failure to do so leaves the first error. */
  private async removeQuietly(target: IrodsTarget, url: string): Promise<void> {
    await target.client
      .post('data-objects', { op: 'remove', lpath: target.path, 'catalog-only': '0', 'no-trash': '1' }, { subject: url, accept: [-808000, -171000] })
      .catch(() => undefined);
  }

  private retrying<T>(options: TransferOptions, attempt: () => Promise<T>): Promise<T> {
    return withRetries(this.retry, options.signal, attempt);
  }

  private parse(url: string): IrodsTarget {
    const match = /^irods:\/\/([^/?#@]+)(\/[^?#]*)$/i.exec(url);
    if (!match) throw new DomainError(ErrorCode.InvalidArgument, `${url} is not an irods://<zone>/<path> URL`);
    const zone = match[1];
    let rest: string;
    try {
      rest = decodeURIComponent(match[2]).replace(/\/+$/, '');
    } catch {
      throw new DomainError(ErrorCode.InvalidArgument, `${url}: bad percent-encoding in the path`);
    }
    if (!rest) throw new DomainError(ErrorCode.InvalidArgument, `${url} names no path inside the zone`);
    // The HTTP API turns every `+` of a query string into a space, so such a path cannot be read or listed.
    if (rest.includes('+')) throw new DomainError(ErrorCode.InvalidArgument, `${url}: iRODS paths with "+" cannot be read through the iRODS HTTP API`);
    const client = this.clients.get(zone);
    if (!client) {
      const known = [...this.clients.keys()].join(', ') || 'none';
      throw new DomainError(ErrorCode.StorageDenied, `${url}: iRODS zone "${zone}" is not configured (storage.irods.zones: ${known})`);
    }
    return { zone, path: `/${zone}${rest}`, client };
  }

}

class ChecksumMismatch extends DomainError {}

/** `name=value` entries of a list setting, split at the first '='. */
function urlOf(logicalPath: string): string {
  const [, zone, ...rest] = logicalPath.split('/');
  return `irods://${zone}/${rest.map(encodeURIComponent).join('/')}`;
}

async function readRange(file: string, offset: number, length: number): Promise<Buffer> {
  const handle = await fs.open(file, 'r');
  try {
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, offset);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** The local file's checksum in iRODS's notation (sha2:<base64> or MD5 hex), or undefined for another kind. */
async function localChecksum(file: string, remote: string): Promise<string | undefined> {
  const kind = remote.startsWith('sha2:') ? 'sha256' : /^[0-9a-f]{32}$/i.test(remote) ? 'md5' : undefined;
  if (!kind) return undefined;
  const hash = createHash(kind);
  await pipeline(createReadStream(file), hash);
  const digest = hash.digest();
  return kind === 'sha256' ? `sha2:${digest.toString('base64')}` : digest.toString('hex');
}

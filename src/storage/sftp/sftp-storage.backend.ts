import { Logger } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { DomainError, ErrorCode } from '../../domain/domain-error';
import { redactUrl } from '../../common/redact';
import { parseSftpHosts, SftpHostLogin } from '../../config/sftp-host-entries';
import type { ListedObject, ObjectInfo, StorageBackend, TransferOptions, UploadStreamOptions } from '../storage-backend';
import { hashFile, UploadResult } from '../transfer/hashed-read';
import { intoPartFile } from '../transfer/positional-write';
import { resumableRead } from '../transfer/resumable-read';
import { sendOnce, SinglePassSource } from '../transfer/single-pass-source';
import { planParts, RetryPolicy, transferParts, TransferPart, withRetries } from '../transfer/transfer-engine';
import { HostKeyPolicy, isNoSuchFile, openSession, SessionTarget, SftpSession } from './sftp-session';

export interface SftpStorageSettings {
  /** "host[:port]=user;key_file=..;passphrase_file=..;password_file=..;password=..;agent=.." entries. */
  hosts: readonly string[];
  known_hosts: string;
  trust_unknown_hosts: boolean;
  timeout_ms: number;
  retries: number;
  retry_base_ms: number;
  retry_max_ms: number;
  parallel_requests: number;
}

export interface SftpTransferParts {
  partBytes: number;
  parallel: number;
}

/** Watches the backend's SFTP requests (tests: that reads and writes of one file really overlap). */
export interface SftpProbe {
  requestsInFlight?(count: number): void;
}

interface SftpTarget extends SessionTarget {
  /** The remote path: absolute, or relative to the login directory for sftp://host/~/path. */
  path: string;
}

/** Bytes of one SFTP read or write request: under OpenSSH's 256 KiB packet limit, so ssh2 never splits it. */
const REQUEST_BYTES = 128 * 1024;

/**
 * sftp:// URLs through ssh2, logins and host keys from settings. Files move as parts (storage.transfer) over one
 * SSH connection and one open handle per file, with at most `parallel_requests` SFTP requests in flight; a part
 * that fails with the connection is retried from its last acknowledged byte on a new connection. Uploads write to
 * a temporary name beside the target and rename it at the end, so a failed upload leaves nothing at the URL.
 */
export class SftpStorageBackend implements StorageBackend {
  readonly schemes = ['sftp'] as const;
  private readonly retry: RetryPolicy;
  private readonly hosts: Map<string, SftpHostLogin>;
  private readonly hostKeys: HostKeyPolicy;

  constructor(
    private readonly settings: SftpStorageSettings,
    private readonly parts: SftpTransferParts = { partBytes: 8 * 1024 * 1024, parallel: 4 },
    private readonly probe: SftpProbe = {},
    warn: (message: string) => void = (message) => new Logger('SftpStorage').warn(message),
  ) {
    this.retry = { retries: settings.retries, baseMs: settings.retry_base_ms, maxMs: settings.retry_max_ms };
    this.hosts = parseSftpHosts(settings.hosts);
    this.hostKeys = { knownHosts: settings.known_hosts, trustUnknownHosts: settings.trust_unknown_hosts, warn };
  }

  locations(): string[] {
    return [...this.hosts.values()].map((login) => `sftp://${login.host.includes(':') ? `[${login.host}]` : login.host}${login.port === 22 ? '' : `:${login.port}`}`);
  }

  async problemWith(url: string): Promise<string | undefined> {
    try {
      this.parse(url);
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  }

  async stat(url: string, options: TransferOptions = {}): Promise<ObjectInfo> {
    const target = this.parse(url);
    return this.withSession(target, options, async (session) => {
      const stats = await session.stat(target.path);
      if (stats.isDirectory()) return { type: 'DIRECTORY' as const };
      return { type: 'FILE' as const, size: stats.size };
    });
  }

  async list(url: string, options: TransferOptions = {}): Promise<ListedObject[]> {
    const target = this.parse(url);
    const base = url.replace(/\/+$/, '');
    return this.withSession(target, options, async (session) => {
      const out: ListedObject[] = [];
      const walk = async (dir: string, rel: string): Promise<void> => {
        const entries = await session.readdir(dir);
        for (const entry of entries.sort((a, b) => a.filename.localeCompare(b.filename))) {
          if (entry.filename === '.' || entry.filename === '..') continue;
          const full = `${dir.replace(/\/+$/, '')}/${entry.filename}`;
          const relPath = rel ? `${rel}/${entry.filename}` : entry.filename;
          // readdir reports links as links: follow them to what they name (a missing target is skipped).
          const attrs = entry.attrs.isSymbolicLink() ? await session.stat(full).catch(() => undefined) : entry.attrs;
          if (attrs?.isDirectory()) await walk(full, relPath);
          else if (attrs?.isFile()) out.push({ url: `${base}/${relPath.split('/').map(encodeURIComponent).join('/')}`, relativePath: relPath, size: attrs.size });
        }
      };
      await walk(target.path, '');
      return out;
    });
  }

  /** Parts read in parallel through one handle, each written to its place in `<destination>.part`. */
  async download(url: string, destination: string, options: TransferOptions = {}): Promise<number> {
    const target = this.parse(url);
    const remote = new SharedHandle(this, target, 'r', options.signal);
    try {
      const { size } = await withRetries(this.retry, options.signal, () => remote.use((session, handle) => session.fstat(handle)));
      return await intoPartFile(destination, async (file) => {
        const limiter = this.requestLimiter();
        await transferParts(
          planParts(size, this.parts.partBytes),
          (part, progress, signal) =>
            remote.use(async (session, handle) => {
              await pipelined(part, progress, this.settings.parallel_requests, signal, async (at, length) => {
                const bytes = await limiter.run(() => session.readAt(handle, at, length));
                if (bytes.length < length) throw new DomainError(ErrorCode.StorageFailed, `${target.shown}: the file ended at ${at + bytes.length} of ${size} bytes (it changed during the download)`);
                return bytes;
              }, (bytes, at) => writeAllAt(file, bytes, at));
            }),
          { concurrency: this.parts.parallel, retry: this.retry, signal: options.signal, onProgress: options.onProgress },
        );
        return size;
      });
    } finally {
      await remote.close();
    }
  }

  /**
   * Parts of the local file written in parallel through one handle of a temporary file beside the target, which
   * is checked for size and renamed into place. The SHA-256 comes from one sequential read beside the transfer
   * (the parts read out of order), which the page cache serves.
   */
  async upload(source: string, url: string, options: TransferOptions = {}): Promise<UploadResult> {
    const target = this.parse(url);
    const { size } = await fs.stat(source);
    const temporary = temporaryName(target.path);
    const local = await fs.open(source, 'r');
    const remote = new SharedHandle(this, target, 'w', options.signal, temporary);
    let created = false;
    try {
      const hashing = hashFile(source);
      hashing.catch(() => undefined);
      await withRetries(this.retry, options.signal, () =>
        remote.use(async () => {
          created = true;
        }),
      );
      const limiter = this.requestLimiter();
      await transferParts(
        planParts(size, this.parts.partBytes),
        (part, progress, signal) =>
          remote.use(async (session, handle) => {
            await pipelined(part, progress, this.settings.parallel_requests, signal, async (at, length) => {
              const bytes = await readAllAt(local, at, length);
              await limiter.run(() => session.writeAt(handle, bytes, at));
              return bytes;
            });
          }),
        { concurrency: this.parts.parallel, retry: this.retry, signal: options.signal, onProgress: options.onProgress },
      );
      await withRetries(this.retry, options.signal, () => remote.finish(size));
      const hashed = await hashing;
      // The local file changed while it was sent: what arrived is not what was hashed.
      if (hashed.bytes !== size) throw new DomainError(ErrorCode.StorageFailed, `${target.shown}: ${source} changed during the upload`);
      return hashed;
    } catch (err) {
      if (created) await this.removeQuietly(target, temporary);
      throw err;
    } finally {
      await local.close();
      await remote.close();
    }
  }

  /** A stream of the file with read-ahead, opened again at the offset reached after a broken connection. */
  async openRead(url: string, options: TransferOptions = {}): Promise<Readable> {
    const target = this.parse(url);
    let total: number | undefined;
    return resumableRead(
      async (offset, signal) => {
        const session = await this.connect(target, signal);
        try {
          const handle = await session.open(target.path, 'r');
          const { size } = await session.fstat(handle);
          // The remote file changed since the read began: its rest does not continue what was delivered.
          if (total !== undefined && size !== total) {
            throw new DomainError(ErrorCode.StorageFailed, `${target.shown}: the file changed during the read (${total} then ${size} bytes)`);
          }
          total = size;
          const body = Readable.from(this.readAhead(session, handle, offset, size), { objectMode: false });
          body.once('close', () => session.end());
          return body;
        } catch (err) {
          session.end();
          throw err;
        }
      },
      { retry: this.retry, signal: options.signal, subject: target.shown, total: () => total, onChunk: (chunk) => options.onProgress?.(chunk.length) },
    );
  }

  /** The bytes from `offset` to `size`, with up to `parallel_requests` reads in flight, delivered in order. */
  private async *readAhead(session: SftpSession, handle: Buffer, offset: number, size: number): AsyncGenerator<Buffer> {
    const pending: Promise<Buffer>[] = [];
    let next = offset;
    const limiter = this.requestLimiter();
    const issue = () => {
      const length = Math.min(REQUEST_BYTES, size - next);
      const read = limiter.run(() => session.readAt(handle, next, length));
      read.catch(() => undefined); // awaited in order below; a later one may fail first
      pending.push(read);
      next += length;
    };
    while (next < size && pending.length < this.settings.parallel_requests) issue();
    while (pending.length) {
      const bytes = await pending.shift()!;
      if (!bytes.length) return; // shrank: resumableRead sees the short end against the size
      if (next < size) issue();
      yield bytes;
    }
  }

  /**
   * Consumes the stream once, in pieces of one SFTP request, with up to `parallel_requests` positional writes in
   * flight to a temporary file that is renamed into place at the end. The connection and the open are retried
   * while no byte was taken; after that a failure is final and the temporary file is removed.
   */
  async uploadStream(source: Readable, url: string, options: UploadStreamOptions = {}): Promise<UploadResult> {
    const target = this.parse(url);
    const temporary = temporaryName(target.path);
    const input = new SinglePassSource(source, options.onProgress);
    let created = false;
    try {
      await sendOnce(input, this.retry, options.signal, target.shown, () =>
        this.onSession(target, options, async (session) => {
          await session.mkdirs(path.posix.dirname(target.path));
          const handle = await session.open(temporary, 'w');
          created = true;
          const inFlight = new Set<Promise<void>>();
          let failure: unknown;
          let offset = 0;
          for (;;) {
            if (failure !== undefined) throw failure;
            if (options.signal?.aborted) throw new DomainError(ErrorCode.StorageFailed, `${target.shown}: aborted`);
            const piece = await input.readUpTo(REQUEST_BYTES);
            if (!piece.length) break;
            const write = session.writeAt(handle, piece, offset).catch((err: unknown) => {
              failure ??= err;
            });
            offset += piece.length;
            inFlight.add(write);
            this.probe.requestsInFlight?.(inFlight.size);
            write.finally(() => inFlight.delete(write));
            // Memory: at most parallel_requests pieces waiting for the server's answer.
            while (inFlight.size >= this.settings.parallel_requests) await Promise.race(inFlight);
          }
          await Promise.all(inFlight);
          if (failure !== undefined) throw failure;
          const wrong = input.sizeMismatch(options.size, target.shown);
          if (wrong) throw wrong;
          await finishUpload(session, handle, temporary, target, input.bytes);
        }),
      );
    } catch (err) {
      if (created) await this.removeQuietly(target, temporary);
      throw err;
    }
    return input.result();
  }

  /** A new session for `target` (used by SharedHandle too). */
  connect(target: SftpTarget, signal?: AbortSignal): Promise<SftpSession> {
    return openSession(target, this.hostKeys, this.settings.timeout_ms, signal);
  }

  /** `work` on a session of its own, the whole retried after transient failures. */
  private withSession<T>(target: SftpTarget, options: TransferOptions, work: (session: SftpSession) => Promise<T>): Promise<T> {
    return withRetries(this.retry, options.signal, () => this.onSession(target, options, work));
  }

  /** `work` on a session of its own, once (a single-pass stream decides itself what may be tried again). */
  private async onSession<T>(target: SftpTarget, options: TransferOptions, work: (session: SftpSession) => Promise<T>): Promise<T> {
    const session = await this.connect(target, options.signal);
    try {
      return await work(session);
    } catch (err) {
      if (options.signal?.aborted) throw new DomainError(ErrorCode.StorageFailed, `${target.shown}: aborted`);
      throw err;
    } finally {
      session.end();
    }
  }

  /** Deletes what a failed upload left, on a connection of its own and without the transfer's signal. */
  private async removeQuietly(target: SftpTarget, file: string): Promise<void> {
    const session = await this.connect(target).catch(() => undefined);
    if (!session) return;
    await session.unlink(file).catch(() => undefined);
    session.end();
  }

  private requestLimiter(): Limiter {
    return new Limiter(this.settings.parallel_requests, this.probe.requestsInFlight);
  }

  private parse(raw: string): SftpTarget {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new DomainError(ErrorCode.InvalidArgument, `${redactUrl(raw)} is not a valid sftp URL`);
    }
    const shown = redactUrl(raw);
    if (url.protocol !== 'sftp:') throw new DomainError(ErrorCode.InvalidArgument, `${shown} is not an sftp URL`);
    if (url.password) throw new DomainError(ErrorCode.StorageDenied, `${shown}: sftp URLs must not carry a password (logins come from storage.sftp.hosts)`);
    if (!url.hostname) throw new DomainError(ErrorCode.InvalidArgument, `${shown} has no host`);
    const port = url.port ? Number(url.port) : 22;
    const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
    const login = this.hosts.get(`${host}:${port}`);
    if (!login) throw new DomainError(ErrorCode.StorageDenied, `${shown}: ${host}:${port} is not in storage.sftp.hosts`);
    const user = url.username ? decodeURIComponent(url.username) : undefined;
    if (user !== undefined && user !== login.user) {
      throw new DomainError(ErrorCode.StorageDenied, `${shown}: storage.sftp.hosts logs in to ${host}:${port} as "${login.user}", not "${user}"`);
    }
    // sftp://host/path is absolute; sftp://host/~/path is inside the login directory.
    const decoded = decodeURIComponent(url.pathname);
    const remotePath = decoded.startsWith('/~/') ? decoded.slice(3) || '.' : decoded === '/~' ? '.' : decoded || '/';
    return { login, path: remotePath, shown };
  }
}

/**
 * One open remote file shared by the parts of a transfer. A connection that breaks is replaced once for all the
 * parts that saw it break (the generation tells a stale failure from a new one), and the file opened again: for
 * reading as it is; for writing, the temporary file created ('w') the first time and opened without truncating
 * ('r+') after, so the parts already written stay.
 */
class SharedHandle {
  private current?: Promise<{ session: SftpSession; handle: Buffer }>;
  private generation = 0;
  private opened = false;
  private closed = false;

  constructor(
    private readonly backend: SftpStorageBackend,
    private readonly target: SftpTarget,
    private readonly mode: 'r' | 'w',
    private readonly signal: AbortSignal | undefined,
    /** For writing: the temporary file the parts go to. */
    private readonly file: string = target.path,
  ) {}

  /** Runs `work` on the open handle; a transient failure drops the connection so the retry gets a new one. */
  async use<T>(work: (session: SftpSession, handle: Buffer) => Promise<T>): Promise<T> {
    if (this.closed) throw new DomainError(ErrorCode.StorageFailed, `${this.target.shown}: aborted`);
    const generation = this.generation;
    const current = (this.current ??= this.open());
    let opened: { session: SftpSession; handle: Buffer };
    try {
      opened = await current;
    } catch (err) {
      this.drop(generation);
      throw err;
    }
    try {
      return await work(opened.session, opened.handle);
    } catch (err) {
      if ((err instanceof DomainError && err.transient) || opened.session.isClosed) this.drop(generation);
      throw err;
    }
  }

  /** Checks the written size, closes the handle and renames the temporary file into place. */
  async finish(size: number): Promise<void> {
    await this.use((session, handle) => finishUpload(session, handle, this.file, this.target, size));
    this.current = undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    const current = this.current;
    this.current = undefined;
    const opened = await current?.catch(() => undefined);
    opened?.session.end();
  }

  private drop(generation: number): void {
    if (generation !== this.generation) return;
    this.generation += 1;
    const stale = this.current;
    this.current = undefined;
    void stale?.then((opened) => opened.session.end(), () => undefined);
  }

  private async open(): Promise<{ session: SftpSession; handle: Buffer }> {
    const session = await this.backend.connect(this.target, this.signal);
    try {
      if (this.mode === 'w' && !this.opened) await session.mkdirs(path.posix.dirname(this.target.path));
      const handle = await session.open(this.file, this.mode === 'r' ? 'r' : this.opened ? 'r+' : 'w');
      this.opened = true;
      return { session, handle };
    } catch (err) {
      session.end();
      throw err;
    }
  }
}

/** Size check, close and rename of an uploaded temporary file. */
async function finishUpload(session: SftpSession, handle: Buffer, temporary: string, target: SftpTarget, size: number): Promise<void> {
  const stored = (await session.fstat(handle)).size;
  await session.closeHandle(handle);
  if (stored !== size) throw new DomainError(ErrorCode.StorageFailed, `${target.shown}: stored ${stored} of ${size} bytes`);
  await session.replace(temporary, target.path);
}

/** A hidden name beside `remotePath`, unique to this upload. */
function temporaryName(remotePath: string): string {
  const dir = path.posix.dirname(remotePath);
  const name = `.${path.posix.basename(remotePath)}.tesp-${randomBytes(6).toString('hex')}.part`;
  return dir === '.' ? name : path.posix.join(dir, name);
}

/**
 * Moves one part in requests of REQUEST_BYTES, up to `window` of them started at once, completing them in order:
 * `progress.done` grows only over the bytes whose request (and `land`, a local write) finished, so a retry
 * resumes after the last of them. Memory: `window` requests' bytes.
 */
async function pipelined(
  part: TransferPart,
  progress: { done: number },
  window: number,
  signal: AbortSignal,
  request: (at: number, length: number) => Promise<Buffer>,
  land?: (bytes: Buffer, at: number) => Promise<void>,
): Promise<void> {
  const end = part.offset + part.length;
  let next = part.offset + progress.done;
  const pending: { at: number; result: Promise<Buffer> }[] = [];
  const issue = () => {
    const at = next;
    const length = Math.min(REQUEST_BYTES, end - at);
    const result = request(at, length);
    result.catch(() => undefined); // awaited in order below
    pending.push({ at, result });
    next += length;
  };
  while (next < end && pending.length < window) issue();
  while (pending.length) {
    if (signal.aborted) throw new DomainError(ErrorCode.StorageFailed, 'transfer aborted');
    const { at, result } = pending.shift()!;
    const bytes = await result;
    if (land) await land(bytes, at);
    progress.done += bytes.length;
    if (next < end) issue();
  }
}

/** At most `limit` requests at once over a whole file, whichever part they belong to. */
class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly limit: number,
    private readonly observe?: (count: number) => void,
  ) {}

  async run<T>(work: () => Promise<T>): Promise<T> {
    // A finished request hands its slot straight to the next waiter, so a newcomer cannot slip in between.
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active += 1;
    this.observe?.(this.active);
    try {
      return await work();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active -= 1;
    }
  }
}

async function writeAllAt(file: FileHandle, bytes: Buffer, at: number): Promise<void> {
  for (let written = 0; written < bytes.length; ) {
    const { bytesWritten } = await file.write(bytes, written, bytes.length - written, at + written);
    written += bytesWritten;
  }
}

async function readAllAt(file: FileHandle, at: number, length: number): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await file.read(buffer, filled, length - filled, at + filled);
    if (!bytesRead) throw new DomainError(ErrorCode.StorageFailed, `the local file ended at ${at + filled} (it changed during the upload)`);
    filled += bytesRead;
  }
  return buffer;
}

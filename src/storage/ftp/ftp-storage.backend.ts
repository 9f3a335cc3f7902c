import { Client, FileInfo, FTPError } from 'basic-ftp';
import { createWriteStream, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { DomainError, ErrorCode } from '../../domain/domain-error';
import { errorMessage, redactUrl } from '../../common/redact';
import type { ListedObject, ObjectInfo, StorageBackend, TransferOptions, UploadStreamOptions } from '../storage-backend';
import { parseFtpCredentials } from '../../config/ftp-credential-entries';
import { hashedReadStream, hashFile, UploadResult } from '../transfer/hashed-read';
import { resumableRead } from '../transfer/resumable-read';
import { sendOnce, SinglePassSource } from '../transfer/single-pass-source';
import { RetryPolicy, withRetries } from '../transfer/transfer-engine';
import { AddressPolicy, AddressPolicySettings, PrivateAddressRefused } from '../transfer/address-policy';

export interface FtpStorageSettings extends AddressPolicySettings {
  /** "host[:port]=user:password" entries used when a URL carries no credentials. */
  credentials: readonly string[];
  timeout_ms: number;
  retries: number;
  retry_base_ms: number;
  retry_max_ms: number;
}

interface FtpTarget {
  host: string;
  port: number;
  user: string;
  password: string;
  /** Path as the server sees it: relative to the login directory unless the URL starts with %2F. */
  path: string;
  /** The URL with credentials removed, for messages. */
  shown: string;
}

const TRANSIENT_REPLIES = new Set([421, 425, 426, 450, 451, 452]);
const TRANSIENT_ERRNO = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'ECONNABORTED', 'EHOSTUNREACH']);

/**
 * ftp:// URLs through basic-ftp. A basic-ftp client does one transfer at a time, so every transfer opens its own
 * client (passive mode) and closes it; a retried download resumes with REST from the bytes on disk.
 */
export class FtpStorageBackend implements StorageBackend {
  readonly schemes = ['ftp'] as const;
  private readonly retry: RetryPolicy;
  private readonly credentials: Map<string, { user: string; password: string }>;
  private readonly addresses: AddressPolicy;

  constructor(private readonly settings: FtpStorageSettings) {
    this.addresses = new AddressPolicy(settings, 'storage.ftp');
    this.retry = { retries: settings.retries, baseMs: settings.retry_base_ms, maxMs: settings.retry_max_ms };
    this.credentials = parseFtpCredentials(settings.credentials);
  }

  locations(): string[] {
    return ['ftp://', ...[...this.credentials.keys()].map((host) => `ftp://${host}`)];
  }

  /** A refused IP literal is refused when the task is created; names are checked when a transfer connects. */
  async problemWith(url: string): Promise<string | undefined> {
    return this.addresses.urlRefusal(url);
  }

  async stat(url: string, options: TransferOptions = {}): Promise<ObjectInfo> {
    const target = this.parse(url);
    return this.withClient(target, options, async (client) => {
      try {
        return { type: 'FILE' as const, size: await client.size(target.path) };
      } catch (err) {
        if (!(err instanceof FTPError)) throw err;
        await client.cd(target.path); // a directory, or the original error stands
        return { type: 'DIRECTORY' as const };
      }
    });
  }

  async list(url: string, options: TransferOptions = {}): Promise<ListedObject[]> {
    const target = this.parse(url);
    const base = url.replace(/\/+$/, '');
    return this.withClient(target, options, async (client) => {
      const out: ListedObject[] = [];
      const walk = async (dir: string, rel: string): Promise<void> => {
        const entries: FileInfo[] = await client.list(dir);
        for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
          if (entry.name === '.' || entry.name === '..') continue;
          const relPath = rel ? `${rel}/${entry.name}` : entry.name;
          if (entry.isDirectory) await walk(`${dir}/${entry.name}`, relPath);
          else if (entry.isFile) out.push({ url: `${base}/${relPath.split('/').map(encodeURIComponent).join('/')}`, relativePath: relPath, size: entry.size });
        }
      };
      await walk(target.path || '.', '');
      return out;
    });
  }

  async download(url: string, destination: string, options: TransferOptions = {}): Promise<number> {
    const target = this.parse(url);
    const partial = `${destination}.part`;
    await fs.rm(partial, { force: true });
    let remoteSize: number | undefined;
    try {
      const size = await withRetries(this.retry, options.signal, () =>
        this.withClient(target, options, async (client) => {
          const expected = await client.size(target.path);
          let have = (await fs.stat(partial).catch(() => ({ size: 0 }))).size;
          // The remote file changed since the last attempt: what we hold is not its prefix, start over.
          if (have > expected || (remoteSize !== undefined && remoteSize !== expected)) have = 0;
          remoteSize = expected;
          const out = createWriteStream(partial, { flags: have > 0 ? 'r+' : 'w', start: have });
          const closed = new Promise<void>((resolve) => out.once('close', () => resolve()));
          trackBytes(client, options.onProgress);
          try {
            await client.downloadTo(out, target.path, have);
          } finally {
            // basic-ftp ends the stream without waiting: the next attempt must see every byte on disk.
            out.end();
            await closed;
          }
          const got = (await fs.stat(partial)).size;
          if (got !== expected) throw new DomainError(ErrorCode.StorageFailed, `${target.shown}: received ${got} of ${expected} bytes`, true);
          return got;
        }),
      );
      await fs.rename(partial, destination);
      return size;
    } catch (err) {
      await fs.rm(partial, { force: true });
      throw err;
    }
  }

  /**
   * STOR with the SHA-256 computed while streaming; after a broken connection the retry asks the server how much
   * arrived and sends the rest with APPE (from zero when the remote file is not a prefix-sized part of ours).
   */
  async upload(source: string, url: string, options: TransferOptions = {}): Promise<UploadResult> {
    const target = this.parse(url);
    const { size } = await fs.stat(source);
    const name = path.posix.basename(target.path);
    let hashed: UploadResult | undefined;
    // Set once a STOR has been accepted (its data started to flow): from then on the remote file holds a prefix
    // of ours. Before that it may be an older file of the same name, which must not be appended to.
    let ours = false;
    const onBytes = (n: number) => {
      ours = true;
      options.onProgress?.(n);
    };
    await withRetries(this.retry, options.signal, () =>
      this.withClient(target, options, async (client) => {
        const dir = path.posix.dirname(target.path);
        if (dir !== '.' && dir !== '/') await client.ensureDir(dir);
        const resumeAt = ours ? await settledSize(client, name) : 0;
        if (resumeAt > 0 && resumeAt < size) {
          // Only the rest goes out; its hash is not the file's (see below).
          await client.appendFrom(hashedReadStream(source, { start: resumeAt, onBytes }).stream, name);
        } else {
          const input = hashedReadStream(source, { onBytes });
          await client.uploadFrom(input.stream, name);
          hashed = input.result();
        }
        const stored = await client.size(name);
        if (stored !== size) throw new DomainError(ErrorCode.StorageFailed, `${target.shown}: stored ${stored} of ${size} bytes`, true);
      }),
    );
    // A resumed upload streamed only the rest: hash the whole file once more.
    return hashed ?? hashFile(source);
  }

  /** RETR on a client of its own, resumed with REST after a broken connection (the size from SIZE tells a cut). */
  async openRead(url: string, options: TransferOptions = {}): Promise<Readable> {
    const target = this.parse(url);
    let total: number | undefined;
    return resumableRead(
      async (offset, signal) => {
        const { body, size } = await this.retrieveFrom(target, offset, signal);
        // The remote file changed since the read began: its rest does not continue what was delivered.
        if (total !== undefined && size !== total) {
          body.destroy();
          throw new DomainError(ErrorCode.StorageFailed, `${target.shown}: the file changed during the read (${total} then ${size} bytes)`);
        }
        total = size;
        return body;
      },
      { retry: this.retry, signal: options.signal, subject: target.shown, total: () => total, onChunk: (chunk) => options.onProgress?.(chunk.length) },
    );
  }

  /** A body streaming the file from `offset` on; the client lives as long as the body. */
  private async retrieveFrom(target: FtpTarget, offset: number, signal: AbortSignal): Promise<{ body: Readable; size: number }> {
    const client = new Client(this.settings.timeout_ms);
    const abort = () => client.close();
    signal.addEventListener('abort', abort, { once: true });
    const done = () => {
      signal.removeEventListener('abort', abort);
      client.close();
    };
    let size: number;
    try {
      await this.login(client, target);
      size = await client.size(target.path);
    } catch (err) {
      done();
      throw this.translate(target, err, signal);
    }
    const body = new PassThrough();
    // basic-ftp pipes the data connection into `body` (so back-pressure reaches the socket) and ends it at EOF.
    client.downloadTo(body, target.path, offset).then(
      () => body.end(),
      (err: unknown) => body.destroy(this.translate(target, err, signal)),
    ).finally(done);
    body.once('close', done);
    return { body, size };
  }

  /**
   * STOR from the stream on one client. Retried while no byte was taken (a refused connection or login); after
   * that a broken connection is final (APPE would need the bytes again), and the partial remote file is deleted.
   */
  async uploadStream(source: Readable, url: string, options: UploadStreamOptions = {}): Promise<UploadResult> {
    const target = this.parse(url);
    const name = path.posix.basename(target.path);
    const input = new SinglePassSource(source, options.onProgress);
    try {
      await sendOnce(input, this.retry, options.signal, target.shown, () =>
        this.withClient(target, options, async (client) => {
          const dir = path.posix.dirname(target.path);
          if (dir !== '.' && dir !== '/') await client.ensureDir(dir);
          await client.uploadFrom(input.attempt(), name);
          const wrong = input.sizeMismatch(options.size, target.shown);
          if (wrong) throw wrong;
          const stored = await client.size(name);
          if (stored !== input.bytes) throw new DomainError(ErrorCode.StorageFailed, `${target.shown}: stored ${stored} of ${input.bytes} bytes`, true);
        }),
      );
    } catch (err) {
      if (input.started) await this.removeQuietly(target);
      throw err;
    }
    return input.result();
  }

  /** Deletes what a failed upload left, without the transfer's signal (it may be why the upload stopped). */
  private async removeQuietly(target: FtpTarget): Promise<void> {
    await this.withClient(target, {}, (client) => client.remove(target.path)).catch(() => undefined);
  }

  private parse(raw: string): FtpTarget {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new DomainError(ErrorCode.InvalidArgument, `${redactUrl(raw)} is not a valid ftp URL`);
    }
    const port = url.port ? Number(url.port) : 21;
    const configured = this.credentials.get(`${url.hostname}:${port}`.toLowerCase()) ?? this.credentials.get(url.hostname.toLowerCase());
    const fromUrl = url.username ? { user: decodeURIComponent(url.username), password: decodeURIComponent(url.password) } : undefined;
    const login = fromUrl ?? configured ?? { user: 'anonymous', password: 'anonymous@' };
    // ftp://host/a/b names a/b inside the login directory; %2F at the start makes it absolute.
    const pathname = decodeURIComponent(url.pathname.replace(/^\//, ''));
    return { host: url.hostname, port, user: login.user, password: login.password, path: pathname, shown: redactUrl(raw) };
  }

  /**
   * Connects to the address the policy checked, not to the name (basic-ftp would resolve it again). Passive data
   * connections go to the control connection's host when a server names a private address for them (basic-ftp).
   */
  private async login(client: Client, target: FtpTarget): Promise<void> {
    const host = await this.addresses.resolveChecked(target.host);
    await client.access({ host, port: target.port, user: target.user, password: target.password, secure: false });
  }

  private async withClient<T>(target: FtpTarget, options: TransferOptions, work: (client: Client) => Promise<T>): Promise<T> {
    const client = new Client(this.settings.timeout_ms);
    const abort = () => client.close();
    options.signal?.addEventListener('abort', abort, { once: true });
    try {
      if (options.signal?.aborted) throw new DomainError(ErrorCode.StorageFailed, `${target.shown}: aborted`);
      await this.login(client, target);
      return await work(client);
    } catch (err) {
      throw this.translate(target, err, options.signal);
    } finally {
      options.signal?.removeEventListener('abort', abort);
      client.close();
    }
  }

  private translate(target: FtpTarget, err: unknown, signal?: AbortSignal): DomainError {
    if (err instanceof DomainError) return err;
    if (signal?.aborted) return new DomainError(ErrorCode.StorageFailed, `${target.shown}: aborted`);
    if (err instanceof PrivateAddressRefused) return new DomainError(ErrorCode.StorageDenied, `${target.shown}: ${err.message}`);
    const message = errorMessage(err).replace(target.password, '***');
    if (err instanceof FTPError) {
      if (err.code === 530) return new DomainError(ErrorCode.StorageDenied, `${target.shown}: login as "${target.user}" refused (${message})`);
      return new DomainError(ErrorCode.StorageFailed, `${target.shown}: ${message}`, TRANSIENT_REPLIES.has(err.code));
    }
    const code = (err as NodeJS.ErrnoException).code;
    const transient = (code !== undefined && TRANSIENT_ERRNO.has(code)) || /timeout|closed|socket/i.test(message);
    return new DomainError(ErrorCode.StorageFailed, `${target.shown}: ${message}`, transient);
  }
}

/** Reports the bytes of each transfer on this client as increments. */
function trackBytes(client: Client, onProgress: ((bytes: number) => void) | undefined): void {
  if (!onProgress) return;
  let last = 0;
  client.trackProgress((info) => {
    if (info.bytes > last) onProgress(info.bytes - last);
    last = info.bytes;
  });
}

/**
 * The size of a remote file once it stops growing (0 when it is missing): after a cut, the server may still be
 * writing what it had received, and appending before it is done would leave a hole.
 */
async function settledSize(client: Client, name: string): Promise<number> {
  let last = -1;
  for (let i = 0; i < 10; i++) {
    const now = await client.size(name).catch(() => 0);
    if (now === last) return now;
    last = now;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return last;
}

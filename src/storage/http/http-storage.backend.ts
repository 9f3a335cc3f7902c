import { promises as fs } from 'node:fs';
import type { Readable } from 'node:stream';
import { Agent, Dispatcher, request } from 'undici';
import { DomainError, ErrorCode } from '../../domain/domain-error';
import { redactText, redactUrl } from '../../common/redact';
import type { ListedObject, ObjectInfo, StorageBackend, TransferOptions, UploadStreamOptions } from '../storage-backend';
import { hashedReadStream, UploadResult } from '../transfer/hashed-read';
import { intoPartFile, writeAt } from '../transfer/positional-write';
import { resumableRead } from '../transfer/resumable-read';
import { sendOnce, SinglePassSource } from '../transfer/single-pass-source';
import { planParts, RetryPolicy, transferParts, withRetries } from '../transfer/transfer-engine';
import { AddressPolicy, AddressPolicySettings, PrivateAddressRefused } from '../transfer/address-policy';

export interface HttpStorageSettings extends AddressPolicySettings {
  max_redirects: number;
  retries: number;
  retry_base_ms: number;
  retry_max_ms: number;
  connect_timeout_ms: number;
  idle_timeout_ms: number;
  max_input_bytes: number;
}

export interface PartSettings {
  /** Bytes per ranged request. */
  partBytes: number;
  /** Ranged requests in flight per download; 1 turns parallel downloads off. */
  parallel: number;
}

const RETRYABLE_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);

interface Target {
  url: URL;
  /** Basic credentials from the URL's userinfo, sent to the original origin only. */
  authorization?: string;
  origin: string;
}

/**
 * http(s) inputs by streamed GET (redirects, retries with backoff, resume with Range, size check) and outputs by
 * streamed PUT. undici's request is used rather than fetch because fetch decodes Content-Encoding, which breaks
 * byte counts and resume.
 */
export class HttpStorageBackend implements StorageBackend {
  readonly schemes = ['http', 'https'] as const;
  private readonly agent: Agent;
  private readonly retry: RetryPolicy;
  private readonly addresses: AddressPolicy;

  constructor(
    private readonly settings: HttpStorageSettings,
    private readonly parts: PartSettings = { partBytes: 8 * 1024 * 1024, parallel: 4 },
  ) {
    this.addresses = new AddressPolicy(settings, 'storage.http');
    // Names are resolved and checked by the policy's lookup, and the socket connects to the address it checked.
    this.agent = new Agent({ connect: { timeout: settings.connect_timeout_ms, lookup: this.addresses.lookup } });
    this.retry = { retries: settings.retries, baseMs: settings.retry_base_ms, maxMs: settings.retry_max_ms };
  }

  locations(): string[] {
    return ['http://', 'https://'];
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  /** An IP literal that is refused is refused when the task is created; names are checked at every connection. */
  async problemWith(url: string): Promise<string | undefined> {
    return this.addresses.urlRefusal(url);
  }

  async stat(url: string, options: TransferOptions = {}): Promise<ObjectInfo> {
    const target = parseTarget(url);
    return withRetries(this.retry, options.signal, async () => {
      let res = await this.send(target, 'HEAD', {}, options);
      if (res.statusCode === 405) res = await this.send(target, 'GET', {}, options);
      await res.body.dump();
      this.check(url, 'HEAD', res.statusCode, res.headers);
      const length = Number(res.headers['content-length']);
      return { type: 'FILE' as const, size: Number.isFinite(length) ? length : undefined };
    });
  }

  async list(url: string): Promise<ListedObject[]> {
    throw new DomainError(ErrorCode.InvalidArgument, `${redactUrl(url)}: http(s) DIRECTORY inputs are not supported: HTTP has no directory listing`);
  }

  /**
   * The first request asks for part 0 as a range: its answer tells the size and whether ranges work. The other
   * parts then move in parallel, each resumed where it broke off. A server that ignores ranges gets one stream,
   * resumed with an open range after a broken connection.
   */
  async download(url: string, destination: string, options: TransferOptions = {}): Promise<number> {
    const target = parseTarget(url);
    return intoPartFile(destination, async (file) => {
      const { partBytes, parallel } = this.parts;
      const first = { done: 0 };
      let whole = parallel <= 1;
      let total: number | undefined;
      let validator: string | undefined;
      await withRetries(this.retry, options.signal, async () => {
        const end = whole ? undefined : partBytes - 1;
        const res = await this.getRange(target, url, first.done, end, validator, options);
        const unsatisfiable = res.statusCode === 416 ? /^bytes \*\/(\d+)$/.exec(header(res.headers['content-range'])?.trim() ?? '') : null;
        if (unsatisfiable && Number(unsatisfiable[1]) === first.done) {
          // Nothing (more) to read: an empty object, or one that ended exactly where the last attempt stopped.
          await res.body.dump();
          total = first.done;
          whole = true;
          return;
        }
        if (res.statusCode === 206) {
          const range = contentRange(res.headers['content-range']);
          if (!range || range.start !== first.done) {
            await res.body.dump();
            throw new DomainError(ErrorCode.StorageFailed, `GET ${redactUrl(url)}: unexpected Content-Range ${String(res.headers['content-range'])}`);
          }
          total = range.total;
          validator ??= strongValidator(res.headers);
        } else {
          await this.checkOrDump(url, 'GET', res);
          // A whole answer: the server ignores ranges, or the object changed; start over as one stream.
          whole = true;
          first.done = 0;
          await file.truncate(0);
          total = expectedTotal(res.statusCode, res.headers);
          validator = header(res.headers['accept-ranges']) === 'bytes' ? strongValidator(res.headers) : undefined;
        }
        this.checkLimit(url, total);
        const expected = whole ? total : Math.min(partBytes, total ?? partBytes);
        await this.writeBody(res, file.fd, first.done, (n) => ((first.done += n), options.onProgress?.(n)), url, options);
        if (expected !== undefined && first.done < expected) {
          if (whole && !validator) first.done = 0; // cannot resume without a validator: retry from the start
          throw new DomainError(ErrorCode.StorageFailed, `${redactUrl(url)}: the connection ended after ${first.done} of ${expected} bytes`, true);
        }
      });
      if (!whole && total !== undefined && total > partBytes) {
        const rest = planParts(total, partBytes).slice(1);
        await transferParts(
          rest,
          async (part, progress, signal) => {
            const start = part.offset + progress.done;
            const res = await this.getRange(target, url, start, part.offset + part.length - 1, validator, { signal });
            const range = res.statusCode === 206 ? contentRange(res.headers['content-range']) : undefined;
            if (!range || range.start !== start) {
              await this.checkOrDump(url, 'GET', res);
              await res.body.dump();
              throw new DomainError(ErrorCode.StorageFailed, `GET ${redactUrl(url)}: the object changed during the download or the server stopped honouring ranges`);
            }
            await this.writeBody(res, file.fd, start, (n) => (progress.done += n), url, { signal });
            if (progress.done < part.length) {
              throw new DomainError(ErrorCode.StorageFailed, `${redactUrl(url)}: part ${part.index} ended after ${progress.done} of ${part.length} bytes`, true);
            }
          },
          { concurrency: parallel, retry: this.retry, signal: options.signal, onProgress: options.onProgress },
        );
      }
      const { size } = await file.stat();
      if (total !== undefined && size !== total) {
        throw new DomainError(ErrorCode.StorageFailed, `${redactUrl(url)}: received ${size} of ${total} bytes`);
      }
      return size;
    });
  }

  private getRange(target: Target, url: string, start: number, end: number | undefined, validator: string | undefined, options: TransferOptions) {
    const headers: Record<string, string> = { 'accept-encoding': 'identity' };
    if (start > 0 || end !== undefined) {
      headers.range = `bytes=${start}-${end ?? ''}`;
      if (validator && start > 0) headers['if-range'] = validator;
    }
    return this.send(target, 'GET', headers, options);
  }

  private checkLimit(url: string, total: number | undefined): void {
    const max = this.settings.max_input_bytes;
    if (max > 0 && total !== undefined && total > max) {
      throw new DomainError(ErrorCode.StorageFailed, `${redactUrl(url)}: ${total} bytes exceed storage.http.max_input_bytes (${max})`);
    }
  }

  /** Writes a response body at `position` in the file; `onWritten` counts only bytes that reached the file. */
  private async writeBody(res: Dispatcher.ResponseData, fd: number, position: number, onWritten: (n: number) => void, url: string, options: TransferOptions): Promise<void> {
    const max = this.settings.max_input_bytes;
    const limit = (end: number) =>
      max > 0 && end > max ? new DomainError(ErrorCode.StorageFailed, `${redactUrl(url)}: more than storage.http.max_input_bytes (${max}) bytes`) : undefined;
    try {
      await writeAt(res.body, fd, position, onWritten, options.signal, limit);
    } catch (err) {
      if (err instanceof DomainError) throw err;
      throw this.networkError(url, 'GET', err);
    }
  }

  async upload(source: string, url: string, options: TransferOptions = {}): Promise<UploadResult> {
    const target = parseTarget(url);
    const { size } = await fs.stat(source);
    let input: ReturnType<typeof hashedReadStream> | undefined;
    await withRetries(this.retry, options.signal, async () => {
      const res = await this.send(target, 'PUT', { 'content-length': String(size), 'content-type': 'application/octet-stream' }, options, () => {
        // Each attempt (and redirect hop) reads and hashes from the start.
        input = hashedReadStream(source, { onBytes: options.onProgress });
        return input.stream;
      });
      await this.checkOrDump(url, 'PUT', res);
      await res.body.dump();
    });
    return input!.result();
  }

  /**
   * One GET, resumed after a broken connection with a Range from the bytes delivered, guarded by If-Range with a
   * strong validator; without ranges or a validator a broken read fails (resuming could splice two versions).
   */
  async openRead(url: string, options: TransferOptions = {}): Promise<Readable> {
    const target = parseTarget(url);
    const shown = redactUrl(url);
    const max = this.settings.max_input_bytes;
    let total: number | undefined;
    let validator: string | undefined;
    let delivered = 0;
    return resumableRead(
      async (offset, signal) => {
        if (offset > 0 && !validator) {
          throw new DomainError(ErrorCode.StorageFailed, `GET ${shown}: the connection broke after ${offset} bytes and the server offers no byte ranges with a strong validator to resume from`);
        }
        const res = await this.getRange(target, url, offset, undefined, validator, { signal });
        if (offset === 0) {
          await this.checkOrDump(url, 'GET', res);
          total = expectedTotal(res.statusCode, res.headers);
          this.checkLimit(url, total);
          validator = header(res.headers['accept-ranges']) === 'bytes' ? strongValidator(res.headers) : undefined;
          return res.body;
        }
        const range = res.statusCode === 206 ? contentRange(res.headers['content-range']) : undefined;
        if (!range || range.start !== offset) {
          await this.checkOrDump(url, 'GET', res);
          await res.body.dump();
          throw new DomainError(ErrorCode.StorageFailed, `GET ${shown}: the object changed during the read or the server stopped honouring ranges`);
        }
        return res.body;
      },
      {
        retry: this.retry,
        signal: options.signal,
        subject: `GET ${shown}`,
        total: () => total,
        onChunk: (chunk) => {
          delivered += chunk.length;
          if (max > 0 && delivered > max) throw new DomainError(ErrorCode.StorageFailed, `${shown}: more than storage.http.max_input_bytes (${max}) bytes`);
          options.onProgress?.(chunk.length);
        },
      },
    );
  }

  /**
   * One streamed PUT: with Content-Length when the size is known, chunked otherwise. Retried only while no byte
   * was taken from the stream (a refused connection); a redirect after bytes went out cannot be followed.
   */
  async uploadStream(source: Readable, url: string, options: UploadStreamOptions = {}): Promise<UploadResult> {
    const target = parseTarget(url);
    const shown = redactUrl(url);
    const input = new SinglePassSource(source, options.onProgress);
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (options.size !== undefined) headers['content-length'] = String(options.size);
    await sendOnce(input, this.retry, options.signal, shown, async () => {
      const res = await this.send(target, 'PUT', headers, options, () => {
        if (input.started) throw new DomainError(ErrorCode.StorageFailed, `PUT ${shown}: redirected after ${input.bytes} bytes of the stream were sent; a stream cannot be sent again`);
        return input.attempt();
      });
      await this.checkOrDump(url, 'PUT', res);
      await res.body.dump();
      const wrong = input.sizeMismatch(options.size, `PUT ${shown}`);
      if (wrong) throw wrong;
    });
    return input.result();
  }

  /** Sends one request, following redirects itself so credentials stay with their origin. */
  private async send(
    target: Target,
    method: 'GET' | 'HEAD' | 'PUT',
    headers: Record<string, string>,
    options: TransferOptions,
    body?: () => NodeJS.ReadableStream,
  ): Promise<Dispatcher.ResponseData> {
    let url = target.url;
    for (let hop = 0; ; hop++) {
      // IP literals never reach the lookup; each hop's host is checked before a packet is sent to it.
      const refused = this.addresses.refusal(url.hostname);
      if (refused) throw new DomainError(ErrorCode.StorageDenied, `${method} ${redactUrl(url.toString())}${hop > 0 ? ` (redirected from ${redactUrl(target.url.toString())})` : ''}: ${refused}`);
      const hopHeaders = { ...headers };
      if (target.authorization && url.origin === target.origin) hopHeaders.authorization = target.authorization;
      const res = await request(url, {
        method,
        headers: hopHeaders,
        body: body?.() as never,
        dispatcher: this.agent,
        signal: options.signal,
        headersTimeout: this.settings.idle_timeout_ms,
        bodyTimeout: this.settings.idle_timeout_ms,
      }).catch((err: unknown) => {
        throw this.networkError(target.url.toString(), method, err);
      });
      const location = header(res.headers.location);
      if (![301, 302, 303, 307, 308].includes(res.statusCode) || !location) return res;
      await res.body.dump();
      if (hop >= this.settings.max_redirects) {
        throw new DomainError(ErrorCode.StorageFailed, `${method} ${redactUrl(target.url.toString())}: more than ${this.settings.max_redirects} redirects (storage.http.max_redirects)`);
      }
      const next = new URL(location, url);
      if (next.protocol !== 'http:' && next.protocol !== 'https:') {
        throw new DomainError(ErrorCode.StorageFailed, `${method} ${redactUrl(target.url.toString())}: redirect to a ${next.protocol} URL refused`);
      }
      if (url.protocol === 'https:' && next.protocol === 'http:') {
        throw new DomainError(ErrorCode.StorageFailed, `${method} ${redactUrl(target.url.toString())}: redirect from https to http refused`);
      }
      next.username = '';
      next.password = '';
      url = next;
    }
  }

  private async checkOrDump(url: string, method: string, res: Dispatcher.ResponseData): Promise<void> {
    if (res.statusCode >= 200 && res.statusCode < 300) return;
    await res.body.dump();
    this.check(url, method, res.statusCode, res.headers);
  }

  private check(url: string, method: string, status: number, headers: Dispatcher.ResponseData['headers']): void {
    if (status >= 200 && status < 300) return;
    if (status === 401) {
      const why = new URL(url).username ? 'the credentials in the URL were refused' : 'the server wants credentials (user:password@ in the URL)';
      throw new DomainError(ErrorCode.StorageDenied, `${method} ${redactUrl(url)} answered HTTP 401: ${why}`);
    }
    if (status === 403) throw new DomainError(ErrorCode.StorageDenied, `${method} ${redactUrl(url)} answered HTTP 403: access forbidden`);
    throw new DomainError(ErrorCode.StorageFailed, `${method} ${redactUrl(url)} answered HTTP ${status}`, RETRYABLE_STATUS.has(status), retryAfterMs(header(headers['retry-after'])));
  }

  private networkError(url: string, method: string, err: unknown): DomainError {
    if ((err as Error).name === 'AbortError') return new DomainError(ErrorCode.StorageFailed, `${method} ${redactUrl(url)}: aborted`);
    if (err instanceof PrivateAddressRefused) return new DomainError(ErrorCode.StorageDenied, `${method} ${redactUrl(url)}: ${err.message}`);
    const code = (err as { code?: string }).code;
    return new DomainError(ErrorCode.StorageFailed, `${method} ${redactUrl(url)}: ${redactText(code ?? (err as Error).message)}`, true);
  }
}

function parseTarget(raw: string): Target {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new DomainError(ErrorCode.InvalidArgument, `${redactUrl(raw)} is not a valid URL`);
  }
  let authorization: string | undefined;
  if (url.username || url.password) {
    const user = decodeURIComponent(url.username);
    const password = decodeURIComponent(url.password);
    authorization = 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64');
    url.username = '';
    url.password = '';
  }
  return { url, authorization, origin: url.origin };
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function contentRange(value: string | string[] | undefined): { start: number; end: number; total?: number } | undefined {
  const match = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec((header(value) ?? '').trim());
  return match ? { start: Number(match[1]), end: Number(match[2]), total: match[3] === '*' ? undefined : Number(match[3]) } : undefined;
}

/** A strong ETag or Last-Modified, safe for If-Range; weak ETags are not. */
function strongValidator(headers: Dispatcher.ResponseData['headers']): string | undefined {
  const etag = header(headers.etag);
  return etag && !etag.startsWith('W/') ? etag : header(headers['last-modified']);
}

/** The full object size the transfer should end at, when the answer says. */
function expectedTotal(status: number, headers: Dispatcher.ResponseData['headers']): number | undefined {
  if (status === 206) return contentRange(headers['content-range'])?.total;
  const length = Number(header(headers['content-length']));
  return Number.isFinite(length) && header(headers['content-encoding']) === undefined ? length : undefined;
}

function retryAfterMs(value: string | undefined): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : undefined;
}

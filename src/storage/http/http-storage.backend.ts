import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Agent, Dispatcher, request } from 'undici';
import { DomainError, ErrorCode } from '../../common/domain-error';
import { redactText, redactUrl } from '../../common/redact';
import type { ListedObject, ObjectInfo, StorageBackend, TransferOptions } from '../storage-backend';

export interface HttpStorageSettings {
  max_redirects: number;
  retries: number;
  retry_base_ms: number;
  retry_max_ms: number;
  connect_timeout_ms: number;
  idle_timeout_ms: number;
  max_input_bytes: number;
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

  constructor(private readonly settings: HttpStorageSettings) {
    this.agent = new Agent({ connect: { timeout: settings.connect_timeout_ms } });
  }

  locations(): string[] {
    return ['http://', 'https://'];
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  async stat(url: string, options: TransferOptions = {}): Promise<ObjectInfo> {
    const target = parseTarget(url);
    return this.withRetries(url, options, async () => {
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

  async download(url: string, destination: string, options: TransferOptions = {}): Promise<number> {
    const target = parseTarget(url);
    const partial = `${destination}.part`;
    let have = 0;
    let validator: string | undefined;
    let resumable = false;
    try {
      const bytes = await this.withRetries(url, options, async () => {
        const headers: Record<string, string> = { 'accept-encoding': 'identity' };
        // Resume from what reached the disk: bytes counted in flight may not have been written when the
        // connection broke.
        if (have > 0) have = (await fs.stat(partial).catch(() => ({ size: 0 }))).size;
        if (have > 0 && resumable) {
          headers.range = `bytes=${have}-`;
          if (validator) headers['if-range'] = validator;
        }
        const res = await this.send(target, 'GET', headers, options);
        if (res.statusCode === 416 && have > 0) {
          await res.body.dump();
          const total = totalFromContentRange(res.headers['content-range']);
          if (total === have) return have;
        }
        if (!(res.statusCode === 206 && have > 0)) {
          await this.checkOrDump(url, 'GET', res);
          have = 0; // a whole answer (also to a ranged request) means starting over
        }
        const etag = header(res.headers.etag);
        validator = etag && !etag.startsWith('W/') ? etag : header(res.headers['last-modified']);
        resumable = header(res.headers['accept-ranges']) === 'bytes' && validator !== undefined;
        const expected = expectedTotal(res.statusCode, res.headers);
        if (this.settings.max_input_bytes > 0 && expected !== undefined && expected > this.settings.max_input_bytes) {
          await res.body.dump();
          throw new DomainError(ErrorCode.StorageFailed, `${redactUrl(url)}: ${expected} bytes exceed storage.http.max_input_bytes (${this.settings.max_input_bytes})`);
        }
        const counter = this.byteCounter(url, have, (n) => (have = n));
        await pipeline(res.body, counter, createWriteStream(partial, { flags: have > 0 ? 'a' : 'w' }), { signal: options.signal });
        if (expected !== undefined && have !== expected) {
          throw new DomainError(ErrorCode.StorageFailed, `${redactUrl(url)}: received ${have} of ${expected} bytes`, true);
        }
        return have;
      });
      await fs.rename(partial, destination);
      return bytes;
    } catch (err) {
      await fs.rm(partial, { force: true });
      throw err;
    }
  }

  async upload(source: string, url: string, options: TransferOptions = {}): Promise<number> {
    const target = parseTarget(url);
    const { size } = await fs.stat(source);
    await this.withRetries(url, options, async () => {
      const res = await this.send(target, 'PUT', { 'content-length': String(size), 'content-type': 'application/octet-stream' }, options, () =>
        createReadStream(source),
      );
      await this.checkOrDump(url, 'PUT', res);
      await res.body.dump();
    });
    return size;
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
    const err = new DomainError(ErrorCode.StorageFailed, `${method} ${redactUrl(url)} answered HTTP ${status}`, RETRYABLE_STATUS.has(status));
    (err as DomainError & { retryAfterMs?: number }).retryAfterMs = retryAfterMs(header(headers['retry-after']));
    throw err;
  }

  private networkError(url: string, method: string, err: unknown): DomainError {
    if ((err as Error).name === 'AbortError') return new DomainError(ErrorCode.StorageFailed, `${method} ${redactUrl(url)}: aborted`);
    const code = (err as { code?: string }).code;
    return new DomainError(ErrorCode.StorageFailed, `${method} ${redactUrl(url)}: ${redactText(code ?? (err as Error).message)}`, true);
  }

  private byteCounter(url: string, start: number, onBytes: (n: number) => void): Transform {
    let total = start;
    const max = this.settings.max_input_bytes;
    return new Transform({
      transform(chunk: Buffer, _enc, done) {
        total += chunk.length;
        onBytes(total);
        if (max > 0 && total > max) done(new DomainError(ErrorCode.StorageFailed, `${redactUrl(url)}: more than storage.http.max_input_bytes (${max}) bytes`));
        else done(null, chunk);
      },
    });
  }

  /** Runs `attempt` until it succeeds, retrying transient failures with exponential backoff and jitter. */
  private async withRetries<T>(url: string, options: TransferOptions, attempt: () => Promise<T>): Promise<T> {
    for (let n = 0; ; n++) {
      try {
        return await attempt();
      } catch (raw) {
        const err = raw instanceof DomainError ? raw : this.networkError(url, 'transfer', raw);
        if (!err.transient || n >= this.settings.retries || options.signal?.aborted) throw err;
        const backoff = Math.min(this.settings.retry_max_ms, this.settings.retry_base_ms * 2 ** n);
        const hinted = (err as DomainError & { retryAfterMs?: number }).retryAfterMs;
        const delay = hinted !== undefined ? Math.min(hinted, this.settings.retry_max_ms) : backoff / 2 + Math.random() * (backoff / 2);
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
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

function totalFromContentRange(value: string | string[] | undefined): number | undefined {
  const match = /\/(\d+)\s*$/.exec(header(value) ?? '');
  return match ? Number(match[1]) : undefined;
}

/** The full object size the transfer should end at, when the answer says. */
function expectedTotal(status: number, headers: Dispatcher.ResponseData['headers']): number | undefined {
  if (status === 206) return totalFromContentRange(headers['content-range']);
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

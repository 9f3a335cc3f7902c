import {
  AbortMultipartUploadCommand,
  CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  HeadObjectCommandOutput,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Readable } from 'node:stream';
import { DomainError, ErrorCode } from '../../domain/domain-error';
import { errorMessage } from '../../common/redact';
import type { ListedObject, ObjectInfo, StorageBackend, TransferOptions, UploadStreamOptions } from '../storage-backend';
import { hashedReadStream, UploadResult } from '../transfer/hashed-read';
import { parseBucketEntries, S3Endpoint } from '../../config/s3-bucket-entries';
import { intoPartFile, writeAt } from '../transfer/positional-write';
import { resumableRead } from '../transfer/resumable-read';
import { SinglePassSource, unrepeatable } from '../transfer/single-pass-source';
import { planParts, RetryPolicy, transferParts, withRetries } from '../transfer/transfer-engine';

export interface S3StorageSettings {
  /** Empty for AWS itself; otherwise the endpoint URL (Ceph RGW, MinIO, ...). */
  endpoint: string;
  region: string;
  access_key_id: string;
  secret_access_key: string;
  force_path_style: boolean;
  /** "bucket=http(s)://[access:secret@]host[:port][?region=..&force_path_style=..]" entries (s3-bucket-entry.parser.ts). */
  buckets: readonly string[];
  retries: number;
  retry_base_ms: number;
  retry_max_ms: number;
}

export interface S3PartSettings {
  partBytes: number;
  parallel: number;
}

/** S3 refuses multipart parts below 5 MiB (except the last). */
const MIN_PART_BYTES = 5 * 1024 * 1024;
/** S3 allows at most this many parts in one multipart upload. */
const MAX_PARTS = 10_000;
const TRANSIENT_NAMES = new Set(['SlowDown', 'RequestTimeout', 'RequestTimeTooSkewed', 'InternalError', 'ServiceUnavailable', 'TimeoutError', 'ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT']);
const DENIED_NAMES = new Set(['AccessDenied', 'SignatureDoesNotMatch', 'InvalidAccessKeyId', 'InvalidToken', 'ExpiredToken']);

/**
 * s3://bucket/key through the AWS SDK v3: downloads as parallel ranged GETs on the transfer engine (each part
 * resumed where it broke off), uploads as multipart with parallel parts, prefixes as directories.
 */
export class S3StorageBackend implements StorageBackend {
  readonly schemes = ['s3'] as const;
  /** The client of the storage.s3 defaults, for buckets without an entry of their own. */
  private readonly defaultClient: S3Client;
  /** Buckets configured in storage.s3.buckets, each with its own client. */
  private readonly bucketClients = new Map<string, S3Client>();
  /** Every configured secret, kept out of messages. */
  private readonly secrets: string[];
  private readonly retry: RetryPolicy;

  constructor(
    private readonly settings: S3StorageSettings,
    private readonly parts: S3PartSettings,
  ) {
    const defaults: S3Endpoint = {
      endpoint: settings.endpoint,
      region: settings.region,
      accessKeyId: settings.access_key_id || undefined,
      secretAccessKey: settings.access_key_id ? settings.secret_access_key : undefined,
      forcePathStyle: settings.force_path_style,
    };
    const buckets = parseBucketEntries(settings.buckets, defaults);
    this.defaultClient = this.clientFor(defaults);
    for (const [bucket, endpoint] of buckets) this.bucketClients.set(bucket, this.clientFor(endpoint));
    this.secrets = [defaults, ...buckets.values()].map((e) => e.secretAccessKey ?? '').filter(Boolean);
    this.retry = { retries: settings.retries, baseMs: settings.retry_base_ms, maxMs: settings.retry_max_ms };
  }

  private clientFor(endpoint: S3Endpoint): S3Client {
    return new S3Client({
      endpoint: endpoint.endpoint || undefined,
      region: endpoint.region,
      forcePathStyle: endpoint.forcePathStyle,
      credentials: endpoint.accessKeyId ? { accessKeyId: endpoint.accessKeyId, secretAccessKey: endpoint.secretAccessKey ?? '' } : undefined,
      // Streamed bodies with flexible checksums go out aws-chunked, which Ceph RGW refuses (MissingContentLength).
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: this.settings.retries + 1,
    });
  }

  private client(bucket: string): S3Client {
    return this.bucketClients.get(bucket) ?? this.defaultClient;
  }

  locations(): string[] {
    return ['s3://', ...[...this.bucketClients.keys()].map((bucket) => `s3://${bucket}`)];
  }

  async close(): Promise<void> {
    this.defaultClient.destroy();
    for (const client of this.bucketClients.values()) client.destroy();
  }

  async stat(url: string, options: TransferOptions = {}): Promise<ObjectInfo> {
    const { bucket, key } = parseS3(url);
    try {
      const head = await this.client(bucket).send(new HeadObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: options.signal });
      return { type: 'FILE', size: head.ContentLength };
    } catch (err) {
      if (!isNotFound(err)) throw this.translate(url, err);
    }
    const listed = await this.client(bucket)
      .send(new ListObjectsV2Command({ Bucket: bucket, Prefix: dirPrefix(key), MaxKeys: 1 }), { abortSignal: options.signal })
      .catch((err) => {
        throw this.translate(url, err);
      });
    if ((listed.KeyCount ?? 0) > 0) return { type: 'DIRECTORY' };
    throw new DomainError(ErrorCode.StorageFailed, `${url}: no such object or prefix`);
  }

  async list(url: string, options: TransferOptions = {}): Promise<ListedObject[]> {
    const { bucket, key } = parseS3(url);
    const prefix = dirPrefix(key);
    const out: ListedObject[] = [];
    let token: string | undefined;
    do {
      const page = await this.client(bucket)
        .send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }), { abortSignal: options.signal })
        .catch((err) => {
          throw this.translate(url, err);
        });
      for (const object of page.Contents ?? []) {
        if (!object.Key || object.Key.endsWith('/')) continue;
        out.push({ url: `s3://${bucket}/${object.Key}`, relativePath: object.Key.slice(prefix.length), size: object.Size });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  async download(url: string, destination: string, options: TransferOptions = {}): Promise<number> {
    const { bucket, key } = parseS3(url);
    return intoPartFile(destination, async (file) => {
      const head = await withRetries(this.retry, options.signal, () =>
        this.client(bucket).send(new HeadObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: options.signal }).catch((err) => {
          throw this.translate(url, err);
        }),
      );
      const size = head.ContentLength ?? 0;
      if (size > 0) {
        await transferParts(
          planParts(size, this.parts.partBytes),
          async (part, progress, signal) => {
            const start = part.offset + progress.done;
            try {
              const res = await this.client(bucket).send(
                new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=${start}-${part.offset + part.length - 1}`, IfMatch: head.ETag }),
                { abortSignal: signal },
              );
              await writeAt(res.Body as Readable, file.fd, start, (n) => (progress.done += n), signal);
            } catch (err) {
              throw this.translate(url, err);
            }
            if (progress.done < part.length) {
              throw new DomainError(ErrorCode.StorageFailed, `${url}: part ${part.index} ended after ${progress.done} of ${part.length} bytes`, true);
            }
          },
          { concurrency: this.parts.parallel, retry: this.retry, signal: options.signal, onProgress: options.onProgress },
        );
      }
      return size;
    });
  }

  async upload(source: string, url: string, options: TransferOptions = {}): Promise<UploadResult> {
    const { bucket, key } = parseS3(url);
    const input = hashedReadStream(source, { onBytes: options.onProgress });
    // Parts are buffered by the SDK: memory stays at about partSize × queueSize whatever the file size.
    const upload = new Upload({
      client: this.client(bucket),
      params: { Bucket: bucket, Key: key, Body: input.stream },
      partSize: Math.max(MIN_PART_BYTES, this.parts.partBytes),
      queueSize: this.parts.parallel,
      leavePartsOnError: false,
    });
    const abort = () => void upload.abort();
    options.signal?.addEventListener('abort', abort, { once: true });
    try {
      await upload.done();
    } catch (err) {
      throw this.translate(url, err);
    } finally {
      options.signal?.removeEventListener('abort', abort);
    }
    return input.result();
  }

  /**
   * A GET of the rest of the object from the offset reached, pinned to the ETag the HEAD saw (If-Match), so a
   * resumed read never continues into another version of the object.
   */
  async openRead(url: string, options: TransferOptions = {}): Promise<Readable> {
    const { bucket, key } = parseS3(url);
    let head: HeadObjectCommandOutput | undefined;
    return resumableRead(
      async (offset, signal) => {
        head ??= await this.client(bucket).send(new HeadObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: signal }).catch((err) => {
          throw this.translate(url, err);
        });
        const size = head.ContentLength ?? 0;
        if (size === 0) return Readable.from([]);
        const res = await this.client(bucket)
          .send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=${offset}-${size - 1}`, IfMatch: head.ETag }), { abortSignal: signal })
          .catch((err) => {
            throw this.translate(url, err);
          });
        return res.Body as Readable;
      },
      { retry: this.retry, signal: options.signal, subject: url, total: () => head?.ContentLength, onChunk: (chunk) => options.onProgress?.(chunk.length) },
    );
  }

  /**
   * A stream that fits one part goes up as one PUT; a longer one as a multipart upload whose parts are cut from
   * the stream in order. `parallel` workers each hold one part at a time (cut, sent, retried from memory), so
   * memory stays at about parallel × part size whatever the length. The part size grows beyond the setting only
   * when the announced size would need more than 10,000 parts. Progress counts parts as S3 accepts them; a
   * failure or abort aborts the multipart upload, so no object appears.
   */
  async uploadStream(source: Readable, url: string, options: UploadStreamOptions = {}): Promise<UploadResult> {
    const { bucket, key } = parseS3(url);
    const client = this.client(bucket);
    const input = new SinglePassSource(source);
    const partBytes = Math.max(MIN_PART_BYTES, this.parts.partBytes, Math.ceil((options.size ?? 0) / MAX_PARTS));
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const send = <T>(what: () => Promise<T>) =>
      withRetries(this.retry, stop.signal, () =>
        what().catch((err) => {
          throw options.signal?.aborted ? new DomainError(ErrorCode.StorageFailed, `${url}: aborted`) : this.translate(url, err);
        }),
      );
    try {
      const first = await input.readUpTo(partBytes);
      if (!(await input.hasMore())) {
        const wrong = input.sizeMismatch(options.size, url);
        if (wrong) throw wrong;
        await send(() => client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: first, ContentLength: first.length }), { abortSignal: stop.signal }));
        options.onProgress?.(first.length);
        return input.result();
      }
      const created = await send(() => client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }), { abortSignal: stop.signal }));
      const ids = { Bucket: bucket, Key: key, UploadId: created.UploadId };
      try {
        const parts = await this.sendParts(input, first, partBytes, url, stop, options.onProgress, (part) =>
          send(() => client.send(new UploadPartCommand({ ...ids, ...part, ContentLength: part.Body.length }), { abortSignal: stop.signal })),
        );
        const wrong = input.sizeMismatch(options.size, url);
        if (wrong) throw wrong;
        await send(() => client.send(new CompleteMultipartUploadCommand({ ...ids, MultipartUpload: { Parts: parts } }), { abortSignal: stop.signal }));
      } catch (err) {
        // Without the transfer's signal: the parts must go even when the task was canceled.
        await client.send(new AbortMultipartUploadCommand(ids)).catch(() => undefined);
        throw err;
      }
      return input.result();
    } catch (err) {
      input.discard();
      throw input.sourceError ?? err;
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Cuts parts from the stream one at a time and sends them with `parallel` workers; the parts, in order. */
  private async sendParts(
    input: SinglePassSource,
    first: Buffer,
    partBytes: number,
    url: string,
    stop: AbortController,
    onProgress: ((bytes: number) => void) | undefined,
    sendPart: (part: { PartNumber: number; Body: Buffer }) => Promise<{ ETag?: string }>,
  ): Promise<CompletedPart[]> {
    const done: CompletedPart[] = [];
    let pending: Buffer | undefined = first;
    let nextNumber = 1;
    // Parts are cut in stream order: one worker reads at a time.
    let reading: Promise<unknown> = Promise.resolve();
    const take = (): Promise<{ PartNumber: number; Body: Buffer } | undefined> => {
      const next = reading.then(async () => {
        const body = pending ?? (await input.readUpTo(partBytes));
        pending = undefined;
        if (body.length === 0) return undefined;
        if (nextNumber > MAX_PARTS) {
          throw new DomainError(ErrorCode.StorageFailed, `${url}: the stream needs more than ${MAX_PARTS} parts of ${partBytes} bytes (announce its size, or raise storage.transfer.part_size_mb)`);
        }
        return { PartNumber: nextNumber++, Body: body };
      });
      reading = next.catch(() => undefined);
      return next;
    };
    let failure: unknown;
    const worker = async () => {
      while (failure === undefined && !stop.signal.aborted) {
        const part = await take();
        if (!part) return;
        let answer: { ETag?: string };
        try {
          answer = await sendPart(part);
        } catch (err) {
          throw unrepeatable(input, url, err);
        }
        done.push({ PartNumber: part.PartNumber, ETag: answer.ETag });
        onProgress?.(part.Body.length);
      }
    };
    await Promise.all(
      Array.from({ length: this.parts.parallel }, () =>
        worker().catch((err) => {
          failure ??= err;
          stop.abort();
        }),
      ),
    );
    if (failure !== undefined) throw failure;
    return done.sort((a, b) => a.PartNumber! - b.PartNumber!);
  }

  private translate(url: string, err: unknown): DomainError {
    if (err instanceof DomainError) return err;
    const name = (err as { name?: string; code?: string }).name ?? (err as { code?: string }).code ?? 'Error';
    const status = err instanceof S3ServiceException ? err.$metadata.httpStatusCode : undefined;
    const message = this.secrets.reduce((text, secret) => text.split(secret).join('***'), errorMessage(err));
    if (DENIED_NAMES.has(name) || status === 403) {
      // Answers to HEAD carry no body, so the SDK cannot name the error; the status still says it.
      const why = name === 'Unknown' || name === 'Error' ? `HTTP ${status ?? 403}` : name;
      const { bucket } = parseS3(url);
      const where = this.bucketClients.has(bucket) ? `the storage.s3.buckets entry for "${bucket}"` : 'storage.s3 credentials';
      return new DomainError(ErrorCode.StorageDenied, `${url}: access denied (${why}); check ${where}`);
    }
    if (isNotFound(err)) return new DomainError(ErrorCode.StorageFailed, `${url}: no such object (${name})`);
    const transient = TRANSIENT_NAMES.has(name) || (status !== undefined && (status >= 500 || status === 429)) || /socket|ECONNRESET|aborted|premature/i.test(message);
    const retryAfterMs = name === 'SlowDown' ? 1000 : undefined;
    return new DomainError(ErrorCode.StorageFailed, `${url}: ${name}: ${message}`, transient, retryAfterMs);
  }
}

function parseS3(url: string): { bucket: string; key: string } {
  const match = /^s3:\/\/([^/]+)\/?(.*)$/i.exec(url);
  if (!match || !match[1]) throw new DomainError(ErrorCode.InvalidArgument, `${url} is not an s3://bucket/key URL`);
  return { bucket: match[1], key: match[2] };
}

function dirPrefix(key: string): string {
  return key === '' || key.endsWith('/') ? key : `${key}/`;
}

function isNotFound(err: unknown): boolean {
  const name = (err as { name?: string }).name;
  return name === 'NotFound' || name === 'NoSuchKey' || (err instanceof S3ServiceException && err.$metadata.httpStatusCode === 404);
}

import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { DomainError, ErrorCode } from '../domain/domain-error';
import { errorMessage, redactUrl } from '../common/redact';
import type { TesOutputFileLog } from '../domain/tes-task';
import type { ListedObject, TransferOptions } from '../storage/storage-backend';
import type { StorageRegistry } from '../storage/storage-registry';
import type { UploadResult } from '../storage/transfer/hashed-read';
import { copyToStorage, openFromStorage } from '../storage/transfer/stream-copy';
import { PlannedCopy, plannedCopies } from './direct-transfer';
import { ExecutionPlan, hostPath, PlanInput, PlanOutput, TaskLayout } from './execution-plan';
import { outputFiles } from './output-files';
import { openToEveryUser } from './task-root';

export interface StagingOptions {
  signal?: AbortSignal;
  /** A line for the task's system_logs (warnings such as a glob that matched nothing). No secrets. */
  log?: (message: string) => void;
  /** Progress of transfers that run longer than `progressIntervalMs`: every interval, and once when each ends. */
  progress?: (event: TransferProgress) => void;
  progressIntervalMs?: number;
}

export interface TransferProgress {
  /** `inputs[i]` or `outputs[i]`. */
  transfer: string;
  /** The file's URL, without credentials. */
  url: string;
  /** The file's path in the container. */
  path: string;
  /** Bytes moved so far. */
  bytes: number;
  /** Average rate since the transfer started. */
  mib_per_s: number;
  done: boolean;
}

const PROGRESS_INTERVAL_MS = 10_000;

const PARALLEL_TRANSFERS = 4;

export interface StagedOutputs {
  outputs: TesOutputFileLog[];
  /** `sha256:<container path>` → hex digest, for the task log's metadata. */
  checksums: Record<string, string>;
}

/** Moves a plan's inputs into the task root before the executors and its outputs away after them. */
export class Staging {
  constructor(private readonly registry: StorageRegistry) {}

  /** Creates the task's directories, then fetches every input to its place under the task root. */
  async stageInputs(plan: ExecutionPlan, layout: TaskLayout, options: StagingOptions = {}): Promise<void> {
    await fs.mkdir(layout.rootDir, { recursive: true });
    // Executors may run as another uid than tesp (docker-options.ts): writable mounts are open to every uid, and
    // the task root is closed to other host users instead (containers reach the mounts without passing through it).
    await fs.chmod(layout.rootDir, 0o700);
    for (const mount of plan.mounts) {
      const host = hostPath(layout.rootDir, mount.path);
      await fs.mkdir(mount.type === 'DIRECTORY' ? host : path.dirname(host), { recursive: true });
      if (!mount.readOnly && mount.type === 'DIRECTORY') await openToEveryUser(layout.rootDir, mount.path);
    }
    await inParallel(plan.inputs, PARALLEL_TRANSFERS, async (input) => {
      const label = `inputs[${input.index}]`;
      const destination = hostPath(layout.rootDir, input.path);
      try {
        if (input.content !== undefined) {
          await fs.writeFile(destination, input.content, 'utf8');
          return;
        }
        if (!input.url) throw new DomainError(ErrorCode.InvalidArgument, 'neither url nor content given');
        const backend = this.registry.forUrl(input.url);
        if (input.type === 'FILE') {
          await metered(options, label, input.url, input.path, (moving) => backend.download(input.url!, destination, moving));
          return;
        }
        await fs.mkdir(destination, { recursive: true });
        const listed = await backend.list(input.url, options);
        await inParallel(listed, PARALLEL_TRANSFERS, async (entry) => {
          const file = path.join(destination, ...entry.relativePath.split('/'));
          await fs.mkdir(path.dirname(file), { recursive: true });
          const containerPath = path.posix.join(input.path, entry.relativePath);
          await metered(options, label, entry.url, containerPath, (moving) => backend.download(entry.url, file, moving));
        });
      } catch (err) {
        throw inputFailure(input, err);
      }
    });
  }

  /**
   * Uploads every output; one log entry per file, and its SHA-256 under the key `sha256:<container path>` for the
   * task log's metadata. A glob that matches nothing is noted, not an error. Symbolic links the task made are
   * followed as the container sees them, never out of the task's directory (see output-files.ts).
   */
  async stageOutputs(plan: ExecutionPlan, layout: TaskLayout, options: StagingOptions = {}): Promise<StagedOutputs> {
    const logs: TesOutputFileLog[] = [];
    const checksums: Record<string, string> = {};
    for (const output of plan.outputs) {
      const label = `outputs[${output.index}]`;
      try {
        const files = await outputFiles(layout.rootDir, output, options.log ?? (() => undefined));
        await inParallel(files, PARALLEL_TRANSFERS, async (file) => {
          const backend = this.registry.forUrl(file.url);
          const { bytes, sha256 } = await metered(options, label, file.url, file.containerPath, (moving) => backend.upload(file.hostPath, file.url, moving));
          logs.push({ url: redactUrl(file.url), path: file.containerPath, size_bytes: String(bytes) });
          checksums[`sha256:${file.containerPath}`] = sha256;
        });
      } catch (err) {
        throw outputFailure(output, err);
      }
    }
    return { outputs: logs, checksums };
  }

  /**
   * A plan without executors: every output file is streamed from the input that provides it (direct-transfer.ts)
   * straight to its URL, through the backends' bounded buffers, so nothing is written to this host's disk however
   * large the files. Every input is checked first (listed, or stat'ed when no output draws on it), so a missing one
   * fails the task before anything is written. Logs, checksums and progress as stageInputs + stageOutputs give.
   */
  async transferDirect(plan: ExecutionPlan, options: StagingOptions = {}): Promise<StagedOutputs> {
    const listings = new Map<number, Promise<ListedObject[]>>();
    const listing = (input: PlanInput) => {
      let listed = listings.get(input.index);
      if (!listed) {
        const url = input.url!;
        listed = Promise.resolve()
          .then(() => this.registry.forUrl(url).list(url, { signal: options.signal }))
          .catch((err: unknown) => {
            throw inputFailure(input, err);
          });
        listings.set(input.index, listed);
      }
      return listed;
    };
    const copies: PlannedCopy[] = [];
    for (const output of plan.outputs) {
      try {
        copies.push(...(await plannedCopies(plan, output, listing, options.log ?? (() => undefined))));
      } catch (err) {
        throw outputFailure(output, err);
      }
    }
    // Sizes go ahead of the bytes where a protocol wants them (Content-Length), and are checked at the end.
    const sizes = new Map<number, number | undefined>();
    const unlisted = plan.inputs.filter((input) => input.url !== undefined && !listings.has(input.index));
    await inParallel(unlisted, PARALLEL_TRANSFERS, async (input) => {
      try {
        sizes.set(input.index, (await this.registry.forUrl(input.url!).stat(input.url!, { signal: options.signal })).size);
      } catch (err) {
        throw inputFailure(input, err);
      }
    });
    const logs: TesOutputFileLog[] = [];
    const checksums: Record<string, string> = {};
    await inParallel(copies, PARALLEL_TRANSFERS, async (copy) => {
      const label = `outputs[${copy.output.index}]`;
      const size = 'content' in copy.source ? Buffer.byteLength(copy.source.content, 'utf8') : (copy.source.size ?? sizes.get(copy.source.input.index));
      const { bytes, sha256 } = await metered(options, label, copy.url, copy.containerPath, (moving) => this.streamCopy(copy, size, moving));
      logs.push({ url: redactUrl(copy.url), path: copy.containerPath, size_bytes: String(bytes) });
      checksums[`sha256:${copy.containerPath}`] = sha256;
    });
    return { outputs: logs, checksums };
  }

  /** One file from its source to its destination; a failure is told as the input's or the output's, by its origin. */
  private async streamCopy({ source, output, url }: PlannedCopy, size: number | undefined, moving: TransferOptions): Promise<UploadResult> {
    let stream: Readable;
    try {
      stream = 'content' in source ? Readable.from([Buffer.from(source.content, 'utf8')], { objectMode: false }) : await openFromStorage(this.registry, source.url, { signal: moving.signal });
    } catch (err) {
      throw inputFailure(source.input, err);
    }
    // uploadStream rejects with the source's own error when the source breaks: that is the input's failure.
    let sourceError: unknown;
    stream.on('error', (err) => (sourceError = err));
    try {
      return await copyToStorage(this.registry, stream, url, { ...moving, size });
    } catch (err) {
      throw err === sourceError ? inputFailure(source.input, err) : outputFailure(output, err);
    }
  }
}

/**
 * Runs one file's transfer with a progress meter: quiet for transfers shorter than the interval, then an event
 * every interval and a last one when it ends, so long transfers show in the logs without flooding them.
 */
async function metered<T>(options: StagingOptions, transfer: string, url: string, containerPath: string, run: (moving: TransferOptions) => Promise<T>): Promise<T> {
  const report = options.progress;
  if (!report) return run({ signal: options.signal });
  const interval = options.progressIntervalMs ?? PROGRESS_INTERVAL_MS;
  const started = Date.now();
  let bytes = 0;
  let lastReport = started;
  let reported = false;
  const emit = (done: boolean) => {
    const now = Date.now();
    lastReport = now;
    reported = true;
    const seconds = Math.max(now - started, 1) / 1000;
    report({ transfer, url: redactUrl(url), path: containerPath, bytes, mib_per_s: Math.round((bytes / 2 ** 20 / seconds) * 10) / 10, done });
  };
  const result = await run({
    signal: options.signal,
    onProgress: (n) => {
      bytes += n;
      if (Date.now() - lastReport >= interval) emit(false);
    },
  });
  if (reported || Date.now() - started >= interval) emit(true);
  return result;
}

/** A failure already told with the transfer it concerns, passed on as it is. */
class StagingFailure extends DomainError {}

function inputFailure(input: PlanInput, err: unknown): DomainError {
  return stagingError(`staging inputs[${input.index}] (${input.url ? redactUrl(input.url) : 'content'}) to ${input.path} failed`, err);
}

function outputFailure(output: PlanOutput, err: unknown): DomainError {
  return stagingError(`uploading outputs[${output.index}] (${output.path} to ${redactUrl(output.url)}) failed`, err);
}

function stagingError(context: string, err: unknown): DomainError {
  if (err instanceof StagingFailure) return err;
  const detail = errorMessage(err);
  const code = err instanceof DomainError ? err.code : ErrorCode.StorageFailed;
  return new StagingFailure(code, `${context}: ${detail}`);
}

export async function inParallel<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: unknown;
  const worker = async () => {
    while (next < items.length && failure === undefined) {
      const item = items[next++];
      try {
        await work(item);
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== undefined) throw failure;
}

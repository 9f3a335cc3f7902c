import { Injectable } from '@nestjs/common';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { DomainError, ErrorCode } from '../common/domain-error';
import { errorMessage, redactUrl } from '../common/redact';
import type { ExecutionPlan } from '../compute/execution-plan';
import type { TesOutputFileLog } from '../tasks/tes-task';
import { outputFiles } from './output-files';
import type { TransferOptions } from './storage-backend';
import { StorageRegistry } from './storage-registry';

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

/** Moves a plan's inputs onto the host before the executors and its outputs away after them. */
@Injectable()
export class StagingService {
  constructor(private readonly registry: StorageRegistry) {}

  /** Creates the task's directories, then fetches every input to its host path. */
  async stageInputs(plan: ExecutionPlan, options: StagingOptions = {}): Promise<void> {
    await fs.mkdir(plan.rootDir, { recursive: true });
    for (const mount of plan.mounts) {
      await fs.mkdir(mount.type === 'DIRECTORY' ? mount.hostPath : path.dirname(mount.hostPath), { recursive: true });
    }
    await inParallel(plan.inputs, PARALLEL_TRANSFERS, async (input) => {
      const label = `inputs[${input.index}]`;
      try {
        if (input.content !== undefined) {
          await fs.writeFile(input.hostPath, input.content, 'utf8');
          return;
        }
        if (!input.url) throw new DomainError(ErrorCode.InvalidArgument, 'neither url nor content given');
        const backend = this.registry.forUrl(input.url);
        if (input.type === 'FILE') {
          await metered(options, label, input.url, input.containerPath, (moving) => backend.download(input.url!, input.hostPath, moving));
          return;
        }
        await fs.mkdir(input.hostPath, { recursive: true });
        const listed = await backend.list(input.url, options);
        await inParallel(listed, PARALLEL_TRANSFERS, async (entry) => {
          const destination = path.join(input.hostPath, ...entry.relativePath.split('/'));
          await fs.mkdir(path.dirname(destination), { recursive: true });
          const containerPath = path.posix.join(input.containerPath, entry.relativePath);
          await metered(options, label, entry.url, containerPath, (moving) => backend.download(entry.url, destination, moving));
        });
      } catch (err) {
        throw stagingError(`staging ${label} (${input.url ? redactUrl(input.url) : 'content'}) to ${input.containerPath} failed`, err);
      }
    });
  }

  /**
   * Uploads every output; one log entry per file, and its SHA-256 under the key `sha256:<container path>` for the
   * task log's metadata. A glob that matches nothing is noted, not an error. Symbolic links the task made are
   * followed as the container sees them, never out of the task's directory (see output-files.ts).
   */
  async stageOutputs(plan: ExecutionPlan, options: StagingOptions = {}): Promise<StagedOutputs> {
    const logs: TesOutputFileLog[] = [];
    const checksums: Record<string, string> = {};
    for (const output of plan.outputs) {
      const label = `outputs[${output.index}]`;
      try {
        const files = await outputFiles(plan.rootDir, output, options.log ?? (() => undefined));
        await inParallel(files, PARALLEL_TRANSFERS, async (file) => {
          const backend = this.registry.forUrl(file.url);
          const { bytes, sha256 } = await metered(options, label, file.url, file.containerPath, (moving) => backend.upload(file.hostPath, file.url, moving));
          logs.push({ url: redactUrl(file.url), path: file.containerPath, size_bytes: String(bytes) });
          checksums[`sha256:${file.containerPath}`] = sha256;
        });
      } catch (err) {
        throw stagingError(`uploading ${label} (${output.containerPath} to ${redactUrl(output.url)}) failed`, err);
      }
    }
    return { outputs: logs, checksums };
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

function stagingError(context: string, err: unknown): DomainError {
  const detail = errorMessage(err);
  const code = err instanceof DomainError ? err.code : ErrorCode.StorageFailed;
  return new DomainError(code, `${context}: ${detail}`);
}

async function inParallel<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
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

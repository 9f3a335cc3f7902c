import { Injectable } from '@nestjs/common';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { DomainError, ErrorCode } from '../common/domain-error';
import { errorMessage, redactUrl } from '../common/redact';
import type { ExecutionPlan } from '../compute/execution-plan';
import type { TesOutputFileLog } from '../tasks/tes-task';
import { outputFiles } from './output-files';
import { StorageRegistry } from './storage-registry';

export interface StagingOptions {
  signal?: AbortSignal;
  /** A line for the task's system_logs (warnings such as a glob that matched nothing). No secrets. */
  log?: (message: string) => void;
}

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
          await backend.download(input.url, input.hostPath, options);
          return;
        }
        await fs.mkdir(input.hostPath, { recursive: true });
        const listed = await backend.list(input.url, options);
        await inParallel(listed, PARALLEL_TRANSFERS, async (entry) => {
          const destination = path.join(input.hostPath, ...entry.relativePath.split('/'));
          await fs.mkdir(path.dirname(destination), { recursive: true });
          await backend.download(entry.url, destination, options);
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
          const { bytes, sha256 } = await this.registry.forUrl(file.url).upload(file.hostPath, file.url, options);
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

// CONTRACT STUB — the storage helper replaces this file with the implementation; the signatures stay.
import { Injectable } from '@nestjs/common';
import type { ExecutionPlan } from '../compute/execution-plan';
import type { TesOutputFileLog } from '../tasks/tes-task';

export interface StagingOptions {
  signal?: AbortSignal;
  /** A line for the task's system_logs (warnings such as a glob that matched nothing). No secrets. */
  log?: (message: string) => void;
}

@Injectable()
export class StagingService {
  /**
   * Creates plan.rootDir and every mount's host directory, then fetches each input to its hostPath
   * (content written directly; FILE via the scheme's backend; DIRECTORY via list + download).
   * Throws DomainError (STORAGE_FAILED / STORAGE_DENIED / INVALID_ARGUMENT) naming the input and a redacted URL.
   */
  async stageInputs(plan: ExecutionPlan, options: StagingOptions = {}): Promise<void> {
    throw new Error(`not implemented ${plan.taskId} ${String(options)}`);
  }

  /**
   * Uploads every output (FILE, DIRECTORY recursively, globs relative to their prefix) and returns one log
   * entry per file uploaded, size_bytes as a string. A missing FILE/DIRECTORY output throws; a glob matching
   * nothing is not an error (logged). Throws DomainError naming the output on failure.
   */
  async stageOutputs(plan: ExecutionPlan, options: StagingOptions = {}): Promise<TesOutputFileLog[]> {
    throw new Error(`not implemented ${plan.taskId} ${String(options)}`);
  }
}

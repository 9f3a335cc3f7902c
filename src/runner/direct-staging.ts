import * as path from 'node:path';
import { errorMessage } from '../common/redact';
import type { ExecutionPlan, TaskLayout } from '../engine/execution-plan';
import { STAGING_REQUEST_UPLOAD_NAME, STAGING_RESULT_FILE, StagingRequest, StagingResult } from '../engine/job-layout';
import { Staging } from '../engine/staging';
import type { StorageRegistry } from '../storage/storage-registry';
import { openForReadingInside, openForWritingInside } from './job-files';

// Direct staging (runner.direct_staging): when tesp uploads inputs/tesp/staging.json, the runner moves the task's
// inputs and outputs itself with its own storage backends instead of tesp pushing every byte through the REST
// API. Inputs land in <job>/inputs/root, outputs are taken from <job>/working/root (job-layout.ts).

const REQUEST_FILE = path.posix.join('inputs', STAGING_REQUEST_UPLOAD_NAME);
const RESULT_FILE = path.posix.join('metadata', STAGING_RESULT_FILE);

/** The job's staging request, or undefined when tesp sent none. Throws when it is there but unreadable. */
export async function readStagingRequest(jobDir: string): Promise<StagingRequest | undefined> {
  const handle = await openForReadingInside(jobDir, REQUEST_FILE);
  if (!handle) return undefined;
  let request: StagingRequest;
  try {
    request = JSON.parse(await handle.readFile('utf8')) as StagingRequest;
  } finally {
    await handle.close();
  }
  if (!request || typeof request.taskId !== 'string' || !Array.isArray(request.inputs) || !Array.isArray(request.outputs) || !Array.isArray(request.mounts)) {
    throw new Error(`${STAGING_REQUEST_UPLOAD_NAME} is not a staging request (taskId, inputs, outputs, mounts)`);
  }
  return request;
}

export class DirectStaging {
  private readonly staging: Staging;

  constructor(private readonly registry: StorageRegistry) {
    this.staging = new Staging(registry);
  }

  schemes(): string[] {
    return this.registry.schemes();
  }

  /** Fetches the inputs into <job>/inputs/root; the reason when that failed. */
  async stageIn(jobDir: string, request: StagingRequest, signal: AbortSignal): Promise<string | undefined> {
    try {
      await this.staging.stageInputs(planOf(request), layoutOf(jobDir, 'inputs'), { signal });
      return undefined;
    } catch (err) {
      const reason = errorMessage(err);
      await this.recordStageInFailure(jobDir, reason);
      return reason;
    }
  }

  /** Why the job could not start (its staging request itself, say), where tesp reads it. */
  async recordStageInFailure(jobDir: string, reason: string): Promise<void> {
    await writeStagingResult(jobDir, { stage_in_error: reason });
  }

  /** Uploads the outputs from <job>/working/root and records what went where; the reason when that failed. */
  async stageOut(jobDir: string, request: StagingRequest, signal: AbortSignal): Promise<string | undefined> {
    const notes: string[] = [];
    try {
      const staged = await this.staging.stageOutputs(planOf(request), layoutOf(jobDir, 'working'), { signal, log: (line) => notes.push(line) });
      await writeStagingResult(jobDir, { outputs: staged.outputs, checksums: staged.checksums, notes });
      return undefined;
    } catch (err) {
      const reason = errorMessage(err);
      await writeStagingResult(jobDir, { stage_out_error: reason, notes });
      return reason;
    }
  }

  close(): Promise<void> {
    return this.registry.close();
  }
}

async function writeStagingResult(jobDir: string, result: StagingResult): Promise<void> {
  const handle = await openForWritingInside(jobDir, RESULT_FILE);
  try {
    await handle.writeFile(JSON.stringify(result));
  } finally {
    await handle.close();
  }
}

/** Staging needs only the transfers and mounts of a plan; the executors run in the job script. */
function planOf(request: StagingRequest): ExecutionPlan {
  return { taskId: request.taskId, mounts: request.mounts, inputs: request.inputs, outputs: request.outputs, executors: [], limits: {} };
}

function layoutOf(jobDir: string, under: 'inputs' | 'working'): TaskLayout {
  return { taskDir: jobDir, rootDir: path.join(jobDir, under, 'root') };
}

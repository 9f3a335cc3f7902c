// Where a task lives inside a Pulsar job directory: the contract between the job script (job-script.ts), the
// pulsar compute backend that sends the job, and `tesp runner` that runs it. Pulsar's own directories are used
// as its routes allow (pulsar-protocol reference §4): uploads of type `input` keep nested names under inputs/,
// downloads of type `output_workdir` read nested names under working/ and `output_metadata` under metadata/.
//
//   <job>/inputs/root/<container path>   inputs, uploaded by tesp (type input, name root/<path>) or staged by the runner
//   <job>/inputs/tesp/job.sh             the job script (type input, name tesp/job.sh)
//   <job>/inputs/tesp/staging.json       direct staging only: what the runner stages itself (StagingRequest)
//   <job>/working/                        the script's cwd (Pulsar's rule)
//   <job>/working/root/<container path>  the task root while it runs: inputs linked in, outputs left here
//   <job>/metadata/tesp/progress         one line per event, appended: "start\t<i>\t<ISO time>",
//                                          "exit\t<i>\t<ISO time>\t<exit code>", "end\t<ISO time>"
//   <job>/metadata/tesp/<i>.stdout|.stderr  each executor's whole stdout and stderr (tails are read from these)
//   <job>/metadata/tesp/files            after the executors: "<size>\t<path below root>\0" for every regular file
//                                          under the plan's writable mounts (what outputs may name)
//   <job>/metadata/tesp/notes            lines for the task's system_logs (e.g. a symbolic link that was dropped)
//   <job>/metadata/tesp/staging-result.json  direct staging only: the runner's StagingResult

import type { ExecutionPlan } from './execution-plan';

/** Upload name prefix of the task root's files (type `input`). */
export const ROOT_UPLOAD_PREFIX = 'root/';
/** The job script's upload name (type `input`). */
export const SCRIPT_UPLOAD_NAME = 'tesp/job.sh';
/** The direct-staging request's upload name (type `input`). */
export const STAGING_REQUEST_UPLOAD_NAME = 'tesp/staging.json';
/** What Pulsar runs, from cwd <job>/working: short, so the submit URL stays small. */
export const JOB_COMMAND_LINE = 'bash ../inputs/tesp/job.sh';
/** Download name prefix (type `output_workdir`) of the task root after the run. */
export const ROOT_DOWNLOAD_PREFIX = 'root/';
/** Download names (type `output_metadata`) of the script's bookkeeping. */
export const PROGRESS_FILE = 'tesp/progress';
export const FILES_MANIFEST = 'tesp/files';
export const NOTES_FILE = 'tesp/notes';
export const STAGING_RESULT_FILE = 'tesp/staging-result.json';
export function executorStreamFile(index: number, stream: 'stdout' | 'stderr'): string {
  return `tesp/${index}.${stream}`;
}

/** The Docker label on every container a job script starts, with the Pulsar job id: how a runner finds them. */
export const JOB_LABEL = 'tesp.job';

/** Container name of executor `index` of a job: unique per job, so a cancel can remove it by name. */
export function jobContainerName(jobId: string, index: number): string {
  return `tesp-${jobId}-${index}`;
}

/** What tesp asks a runner to stage itself (direct staging): the plan's transfers, with their storage URLs. */
export interface StagingRequest {
  taskId: string;
  inputs: Array<{ index: number; url: string; type: 'FILE' | 'DIRECTORY'; path: string }>;
  outputs: Array<{ index: number; url: string; type: 'FILE' | 'DIRECTORY'; path: string; glob?: { prefix: string } }>;
  /** Writable mounts, so the runner creates their directories (as the local engine's stageInputs does). */
  mounts: Array<{ path: string; readOnly: boolean; type: 'FILE' | 'DIRECTORY' }>;
}

/** What a runner reports of its own staging (metadata/tesp/staging-result.json). */
export interface StagingResult {
  /** Why the inputs could not be staged (then the job did not run). */
  stage_in_error?: string;
  /** Why outputs could not be staged after the job. */
  stage_out_error?: string;
  /** One entry per uploaded file, as the task log's outputs (url without credentials, path, size_bytes). */
  outputs?: Array<{ url: string; path: string; size_bytes: string }>;
  /** sha256:<container path> → hex digest. */
  checksums?: Record<string, string>;
  /** Lines for system_logs (e.g. a glob that matched nothing). */
  notes?: string[];
}

/** Pulsar job ids tesp sends and `tesp runner` accepts: safe as one path segment, never "." or "..". */
export function isSafeJobId(id: string): boolean {
  return /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$/.test(id) && id !== '.' && id !== '..' && !id.includes('..');
}

/** What a tesp runner stages itself (direct staging): the plan's transfers with their storage URLs. */
export function stagingRequestOf(plan: ExecutionPlan): StagingRequest {
  return {
    taskId: plan.taskId,
    inputs: plan.inputs.flatMap((i) => (i.url !== undefined && i.content === undefined ? [{ index: i.index, url: i.url, type: i.type, path: i.path }] : [])),
    outputs: plan.outputs.map((o) => ({ index: o.index, url: o.url, type: o.type, path: o.path, ...(o.glob ? { glob: o.glob } : {}) })),
    mounts: plan.mounts,
  };
}

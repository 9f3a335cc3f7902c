import { createHmac, timingSafeEqual } from 'node:crypto';
import type { ExecutionPlan, PlanOutput } from '../../engine/execution-plan';
import { JOB_COMMAND_LINE, ROOT_UPLOAD_PREFIX, SCRIPT_UPLOAD_NAME, STAGING_REQUEST_UPLOAD_NAME, StagingRequest } from '../../engine/job-layout';
import { globSource } from '../../engine/output-files';

// The setup message of a task's job over AMQP (pulsar-protocol reference §9, §12.3). AMQP has no file routes, so
// everything moves through `remote_staging`:
//   - the job script, the direct-staging request and content inputs as `message` actions (literal contents);
//   - other inputs as `remote_transfer` actions from tesp's staging URLs (GET .../inputs/<index>[?file=<file>]);
//   - outputs and the script's bookkeeping (metadata/tesp/*) posted back by the runner to the files endpoint
//     (POST .../files?path=<client path>&file_type=<type>, multipart field `file`). Pulsar finds them through
//     `dynamic_outputs`: regular expressions over the names below working/ and metadata/, built from the plan so
//     that only the task's outputs and tesp's bookkeeping are sent; the upload's `path` is the client directory
//     joined with that name.
// Staging URLs carry an unguessable key: an HMAC of the task id and attempt under compute.pulsar.staging_secret, so
// any replica that shares the secret can check one without a store lookup, and it is refused once the attempt ends.

/** Client-side directories named in client_outputs: the `path` of every upload starts with one of them. */
export const CLIENT_WORKING_DIR = '/tesp/working';
export const CLIENT_METADATA_DIR = '/tesp/metadata';

export interface RelayInputFile {
  /** Index of the plan input. */
  index: number;
  /** For a directory input, the file below it ('' for a file input). */
  relative: string;
  /** The container path the file lands at. */
  path: string;
}

export function relayKey(secret: string, taskId: string, attempt: number): string {
  return createHmac('sha256', secret).update(`${taskId}\n${attempt}`).digest('base64url').slice(0, 43);
}

export function relayKeyMatches(secret: string, taskId: string, attempt: number, key: string): boolean {
  const expected = Buffer.from(relayKey(secret, taskId, attempt));
  const given = Buffer.from(key);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** The per-attempt base of a task's staging URLs. */
export function relayBase(stagingUrl: string, taskId: string, attempt: number, key: string): string {
  return `${stagingUrl.replace(/\/+$/, '')}/tesp/relay/${encodeURIComponent(taskId)}/${attempt}/${key}`;
}

export function relayInputUrl(base: string, file: RelayInputFile): string {
  return `${base}/inputs/${file.index}${file.relative === '' ? '' : `?${new URLSearchParams({ file: file.relative })}`}`;
}

export interface SetupMessageOptions {
  jobId: string;
  script: string;
  /** The relay base for this attempt (relayBase). */
  relay: string;
  /** Files of the plan's URL inputs, directories listed (content inputs are not among them). */
  inputFiles: readonly RelayInputFile[];
  /** Sent to a tesp runner that stages itself: what it stages with its own storage backends where it can. */
  stagingRequest?: StagingRequest;
}

export function setupMessage(plan: ExecutionPlan, options: SetupMessageOptions): Record<string, unknown> {
  const message = (name: string, contents: string) => ({ name, type: 'input', action: { action_type: 'message', contents } });
  const setup: unknown[] = [message(SCRIPT_UPLOAD_NAME, options.script)];
  if (options.stagingRequest) setup.push(message(STAGING_REQUEST_UPLOAD_NAME, JSON.stringify(options.stagingRequest)));
  for (const input of plan.inputs) if (input.content !== undefined) setup.push(message(rootName(input.path), input.content));
  for (const file of options.inputFiles) {
    const clientPath = `/tesp/inputs/${file.index}${file.relative ? `/${file.relative}` : ''}`;
    setup.push({
      name: rootName(file.path),
      type: 'input',
      // Both path and source: with source alone Pulsar drops path (reference §9.1).
      action: { action_type: 'remote_transfer', path: clientPath, source: { path: clientPath }, url: relayInputUrl(options.relay, file) },
    });
  }
  return {
    job_id: options.jobId,
    command_line: JOB_COMMAND_LINE,
    setup_params: { job_id: options.jobId, tool_id: 'tes-task', tool_version: '1.1' },
    env: [],
    remote_staging: {
      setup,
      action_mapper: { default_action: 'remote_transfer', files_endpoint: `${options.relay}/files`, paths: [] },
      client_outputs: {
        working_directory: CLIENT_WORKING_DIR,
        metadata_directory: CLIENT_METADATA_DIR,
        job_directory: null,
        work_dir_outputs: [],
        output_files: [],
        version_file: null,
        dynamic_outputs: collectedNames(plan.outputs),
        dynamic_file_sources: null,
        dataset_collector_descriptions: [],
      },
    },
  };
}

/**
 * Patterns (Python `re.match`, anchored at the start) for the names Pulsar posts back: tesp's bookkeeping below
 * metadata/ and, below working/, each output's files under the task root (a file, a directory's files, a glob's
 * matches). Never empty: an empty list would mean Galaxy's default pattern.
 */
export function collectedNames(outputs: readonly PlanOutput[]): string[] {
  const patterns = ['tesp/[^/]+$'];
  for (const output of outputs) {
    const rel = output.path.replace(/^\/+/, '');
    if (output.glob) patterns.push(`root/${globSource(rel)}$`);
    else if (output.type === 'FILE') patterns.push(`root/${escapeRegex(rel)}$`);
    else patterns.push(rel === '' ? 'root/' : `root/${escapeRegex(rel)}/`);
  }
  return patterns;
}

function rootName(containerPath: string): string {
  return ROOT_UPLOAD_PREFIX + containerPath.replace(/^\/+/, '');
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

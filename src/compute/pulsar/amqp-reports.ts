import type { ConsumeMessage } from 'amqplib';
import type { Readable } from 'node:stream';
import type { Logger } from '../../common/logger';
import { parseJsonMessage } from '../../common/amqp-link';
import { errorMessage, redactUrl } from '../../common/redact';
import { DomainError, ErrorCode } from '../../domain/domain-error';
import type { TaskUpdate } from '../../domain/task-update';
import { logIndexOf, StoredTask, TesState } from '../../domain/tes-task';
import { buildExecutionPlan, ExecutionPlan } from '../../engine/execution-plan';
import { TailBuffer } from '../../engine/executor-output';
import { JobReporter } from '../../engine/job-report';
import { parseFilesManifest } from '../../engine/job-progress';
import { FILES_MANIFEST, NOTES_FILE, PROGRESS_FILE, STAGING_RESULT_FILE, StagingResult } from '../../engine/job-layout';
import type { StorageRegistry } from '../../storage/storage-registry';
import type { ListedObject } from '../../storage/storage-backend';
import type { TaskReports } from '../compute-backend';
import { CLIENT_METADATA_DIR, CLIENT_WORKING_DIR, relayKeyMatches } from './amqp-setup-message';
import { filesOf } from './pulsar-job';

// What reaches tesp from a runner over AMQP, on whichever replica it lands (the holder may be another one):
// - status updates from the runner's __status_update queue, acknowledged only after what they mean is stored;
// - files the runner posts to the task's staging URL: outputs (streamed on to their storage URLs) and the job
//   script's bookkeeping (progress, executor log tails, files manifest, notes, direct-staging result), kept in the
//   task's backend reference until the final status settles the run from them.
// Everything is applied as report patches (attempt and state guards only), so a duplicate, a redelivery or an
// update out of order changes nothing that one delivery in order would not.

/** Bookkeeping files larger than this are refused (a progress file or manifest is a few KiB). */
const METADATA_LIMIT_BYTES = 4 * 1024 * 1024;
/** Characters of a job's own stderr quoted in a SYSTEM_ERROR reason. */
const REASON_TAIL_CHARS = 2000;
/** How long a directory input's listing is reused while the runner fetches its files one by one. */
const LISTING_TTL_MS = 60_000;

const REPORT = {
  [PROGRESS_FILE]: 'report_progress',
  [FILES_MANIFEST]: 'report_files',
  [NOTES_FILE]: 'report_notes',
  [STAGING_RESULT_FILE]: 'report_staging_result',
} as const;
const tailKey = (index: number, stream: 'stdout' | 'stderr') => `report_tail_${index}_${stream}`;
/** An executor's stdout or stderr below metadata/ (job-layout.ts executorStreamFile). */
const EXECUTOR_STREAM = /^tesp\/(\d{1,6})\.(stdout|stderr)$/;

const STATES = ['preprocessing', 'queued', 'running', 'postprocessing', 'complete', 'failed', 'cancelled', 'lost'] as const;
type JobState = (typeof STATES)[number];
const FINAL: readonly JobState[] = ['complete', 'failed', 'cancelled', 'lost'];

export interface StatusUpdate {
  jobId: string;
  status: JobState;
  returncode: number | null;
  jobStderr: string;
  acknowledge?: { uuid: string; queue: string };
}

/** A status_update body as Pulsar sends it, or why it is not one. */
export function parseStatusUpdate(message: ConsumeMessage): { update: StatusUpdate } | { problem: string } {
  const parsed = parseJsonMessage(message);
  if ('problem' in parsed) return parsed;
  const body = parsed.body;
  if (typeof body.job_id !== 'string' || body.job_id === '') return { problem: 'it has no job_id' };
  if (!STATES.includes(body.status as JobState)) return { problem: `its status ${JSON.stringify(body.status)?.slice(0, 40)} is not a Pulsar job state` };
  const code = typeof body.returncode === 'number' ? body.returncode : typeof body.returncode === 'string' && /^-?\d+$/.test(body.returncode.trim()) ? Number(body.returncode) : null;
  const stderr = typeof body.job_stderr === 'string' ? body.job_stderr : typeof body.stderr === 'string' ? body.stderr : '';
  const update: StatusUpdate = { jobId: body.job_id, status: body.status as JobState, returncode: code, jobStderr: stderr };
  if (typeof body.acknowledge_uuid === 'string' && typeof body.acknowledge_queue === 'string') update.acknowledge = { uuid: body.acknowledge_uuid, queue: body.acknowledge_queue };
  return { update };
}

/** The task and attempt a job id of tesp's names (<task id>-<attempt>); undefined for other jobs (a cleanup job). */
export function jobTask(jobId: string): { taskId: string; attempt: number } | undefined {
  const match = /^(.+)-(\d{1,6})$/.exec(jobId);
  return match ? { taskId: match[1], attempt: Number(match[2]) } : undefined;
}

export interface StatusOutcome {
  /** 'requeue': could not be stored now (or the holder has not recorded the job yet): deliver it again. */
  result: 'stored' | 'ignored' | 'requeue';
  /** The run is over and its end is stored: the job's directory may go. */
  settled?: { taskId: string; jobId: string };
}

export class AmqpReports {
  private reports?: TaskReports;
  private readonly listings = new Map<string, { at: number; entries: Promise<ListedObject[]> }>();

  constructor(
    private readonly storage: StorageRegistry,
    private readonly settings: { stagingSecret: string; logTailBytes: number },
    private readonly logger: Logger,
  ) {}

  accept(reports: TaskReports): void {
    this.reports = reports;
  }

  private get store(): TaskReports {
    if (!this.reports) throw new DomainError(ErrorCode.Unavailable, 'the scheduler has not started yet', true);
    return this.reports;
  }

  /** A status update from runner `runnerName`'s queue: settles the task's attempt from it. */
  async statusUpdate(runnerName: string, update: StatusUpdate): Promise<StatusOutcome> {
    const owner = jobTask(update.jobId);
    if (!owner) {
      this.logger.debug({ runner: runnerName, job_id: update.jobId }, 'a status update of a job that is no task of tesp (a cleanup job): ignored');
      return { result: 'ignored' };
    }
    const task = await this.store.get(owner.taskId);
    const ref = task?.control.backend_ref;
    if (!task || task.control.attempt !== owner.attempt) {
      this.logger.warn({ runner: runnerName, job_id: update.jobId, status: update.status }, task ? 'a status update of an earlier attempt of a task: ignored' : 'a status update of an unknown job: dropped');
      return { result: 'ignored' };
    }
    if (ref?.job_id === undefined) {
      // Pushed before the holder recorded which job it started: once it has, this update applies.
      if (task.state === TesState.INITIALIZING) return { result: 'requeue' };
      return { result: 'ignored' };
    }
    if (ref.runner !== runnerName || ref.job_id !== update.jobId) {
      this.logger.warn({ runner: runnerName, job_id: update.jobId }, 'a status update of a job that is not this runner\'s: dropped');
      return { result: 'ignored' };
    }
    const where = `job ${update.jobId} on runner ${runnerName}`;
    const updates = await settle(buildExecutionPlan(task), task, update, where);
    if (updates.length === 0) return { result: 'ignored' };
    if (!(await this.store.apply(task.id, owner.attempt, updates))) return { result: 'requeue' };
    if (!FINAL.includes(update.status)) return { result: 'stored' };
    const after = await this.store.get(task.id);
    const over = after !== undefined && (after.control.attempt !== owner.attempt || ![TesState.INITIALIZING, TesState.RUNNING, TesState.CANCELING].includes(after.state));
    return { result: 'stored', settled: over ? { taskId: task.id, jobId: update.jobId } : undefined };
  }

  /** A relay request's task, when its key is right and its attempt is the running one (403 otherwise). */
  private async relayTask(taskId: string, attempt: number, key: string): Promise<StoredTask> {
    const refused = (why: string) => new DomainError(ErrorCode.Forbidden, `this staging URL is not valid: ${why}`);
    if (!Number.isSafeInteger(attempt) || !relayKeyMatches(this.settings.stagingSecret, taskId, attempt, key)) throw refused('wrong key');
    const task = await this.store.get(taskId);
    if (!task) throw refused('wrong key');
    if (task.control.attempt !== attempt || (task.state !== TesState.INITIALIZING && task.state !== TesState.RUNNING)) {
      throw refused(`attempt ${attempt} of task ${taskId} is not running (${task.state})`);
    }
    return task;
  }

  /** An input file for the runner to fetch: the input's (or a directory input's file's) storage stream. */
  async openInput(taskId: string, attempt: number, key: string, index: number, relative: string): Promise<{ body: Readable; size?: number }> {
    const task = await this.relayTask(taskId, attempt, key);
    const input = buildExecutionPlan(task).inputs.find((i) => i.index === index);
    if (!input || input.url === undefined || input.content !== undefined) throw new DomainError(ErrorCode.NotFound, `task ${taskId} has no input ${index} to fetch`);
    let url = input.url;
    if (input.type === 'DIRECTORY') {
      const entry = (await this.listing(`${taskId}/${attempt}/${index}`, input.url)).find((e) => e.relativePath === relative);
      if (!entry) throw new DomainError(ErrorCode.NotFound, `inputs[${index}] has no file ${JSON.stringify(relative.slice(0, 200))}`);
      url = entry.url;
    } else if (relative !== '') {
      throw new DomainError(ErrorCode.NotFound, `inputs[${index}] is a file`);
    }
    const backend = this.storage.forUrl(url);
    const info = await backend.stat(url);
    return { body: await backend.openRead(url), size: info.size };
  }

  /** The files of a directory input (tesp lists it at submit and names each in the setup message). */
  listing(cacheKey: string, url: string): Promise<ListedObject[]> {
    const now = Date.now();
    for (const [key, entry] of this.listings) if (now - entry.at > LISTING_TTL_MS) this.listings.delete(key);
    const cached = this.listings.get(cacheKey);
    if (cached) return cached.entries;
    const entries = this.storage.forUrl(url).list(url);
    entries.catch(() => this.listings.delete(cacheKey));
    this.listings.set(cacheKey, { at: now, entries });
    return entries;
  }

  /**
   * A file the runner posts to the files endpoint (`path` is the client path the setup message implied): an
   * output, streamed on to its storage URL, or a bookkeeping file, kept in the backend reference.
   */
  async receiveFile(taskId: string, attempt: number, key: string, clientPath: string, body: Readable): Promise<{ stored: string }> {
    const task = await this.relayTask(taskId, attempt, key);
    const plan = buildExecutionPlan(task);
    const workingRoot = `${CLIENT_WORKING_DIR}/root/`;
    const metadata = `${CLIENT_METADATA_DIR}/`;
    if (clientPath.startsWith(workingRoot) && isPlainRelative(clientPath.slice(workingRoot.length))) {
      return this.receiveOutput(task, plan, clientPath.slice(workingRoot.length), body);
    }
    if (clientPath.startsWith(metadata) && isPlainRelative(clientPath.slice(metadata.length))) {
      return this.receiveMetadata(task, clientPath.slice(metadata.length), body);
    }
    body.resume();
    throw new DomainError(ErrorCode.Forbidden, `tesp does not take ${JSON.stringify(clientPath.slice(0, 200))} for task ${task.id}`);
  }

  private async receiveOutput(task: StoredTask, plan: ExecutionPlan, rel: string, body: Readable): Promise<{ stored: string }> {
    const targets = plan.outputs.flatMap((output) => {
      try {
        return filesOf(output, [{ path: rel, size: 0 }], () => undefined).filter((file) => file.rel === rel);
      } catch {
        return []; // a file output that names another file
      }
    });
    if (targets.length === 0) {
      body.resume();
      throw new DomainError(ErrorCode.Forbidden, `/${rel} is not an output of task ${task.id}`);
    }
    const [first, ...others] = targets;
    const result = await this.storage.forUrl(first.url).uploadStream(body, first.url);
    // The same file named by several outputs (a file inside an output directory): copied from where it landed.
    for (const other of others) {
      await this.storage.forUrl(other.url).uploadStream(await this.storage.forUrl(first.url).openRead(first.url), other.url, { size: result.bytes });
    }
    const updates: TaskUpdate[] = [
      { kind: 'output-uploaded', outputs: targets.map((t) => ({ url: redactUrl(t.url), path: t.containerPath, size_bytes: String(result.bytes) })) },
      { kind: 'metadata', values: Object.fromEntries(targets.map((t) => [`sha256:${t.containerPath}`, result.sha256])) },
    ];
    await this.record(task, updates);
    return { stored: `${result.bytes} bytes of /${rel}` };
  }

  private async receiveMetadata(task: StoredTask, name: string, body: Readable): Promise<{ stored: string }> {
    const stream = EXECUTOR_STREAM.exec(name);
    let values: Record<string, string>;
    if (stream) {
      const tail = new TailBuffer(this.settings.logTailBytes);
      for await (const chunk of body) tail.push(chunk as Buffer);
      values = { [tailKey(Number(stream[1]), stream[2] as 'stdout' | 'stderr')]: tail.text() };
    } else if (name in REPORT) {
      const bytes = await readBounded(body, METADATA_LIMIT_BYTES, name);
      // The manifest separates entries with NUL: base64 keeps it intact in every store.
      values = { [REPORT[name as keyof typeof REPORT]]: name === FILES_MANIFEST ? bytes.toString('base64') : bytes.toString('utf8') };
    } else {
      body.resume();
      throw new DomainError(ErrorCode.Forbidden, `tesp does not take metadata file ${JSON.stringify(name.slice(0, 100))}`);
    }
    await this.record(task, [{ kind: 'backend-ref', ref: values }]);
    return { stored: name };
  }

  private async record(task: StoredTask, updates: TaskUpdate[]): Promise<void> {
    if (!(await this.store.apply(task.id, task.control.attempt, updates))) {
      throw new DomainError(ErrorCode.Unavailable, 'the task store could not record the file now; send it again', true);
    }
  }
}

/**
 * What a status update means for the task, from the reports its job posted before (Pulsar posts every file before
 * it publishes the final status). The same translation as the REST path's (pulsar-job.ts), read from the store.
 */
export async function settle(plan: ExecutionPlan, task: StoredTask, status: StatusUpdate, where: string): Promise<TaskUpdate[]> {
  const ref = task.control.backend_ref ?? {};
  const text = (key: string) => (typeof ref[key] === 'string' ? (ref[key] as string) : undefined);
  const stderrTail = status.jobStderr.slice(-REASON_TAIL_CHARS).trim();
  const withStderr = (line: string) => (stderrTail ? `${line}; its stderr: ${stderrTail}` : line);
  const fail = (reason: string): TaskUpdate[] => [{ kind: 'finished', state: 'SYSTEM_ERROR', reason }];
  const stagingResult = (): StagingResult | undefined => {
    const raw = text(REPORT[STAGING_RESULT_FILE]);
    if (raw === undefined) return undefined;
    try {
      return JSON.parse(raw) as StagingResult;
    } catch {
      return { stage_out_error: 'the runner wrote an unreadable staging result' };
    }
  };
  switch (status.status) {
    case 'running':
      return plan.executors.length > 0 ? [{ kind: 'running' }] : [];
    case 'lost':
      return fail(`${where} is lost: the runner no longer knows it (its job directory is gone)`);
    case 'cancelled':
      return task.state === TesState.CANCELING ? [] : fail(`${where} was cancelled on the runner, not through tesp`);
    case 'failed': {
      const result = stagingResult();
      const why = result?.stage_in_error ? `staging the inputs failed: ${result.stage_in_error}`
        : result?.stage_out_error ? `staging the outputs failed: ${result.stage_out_error}`
        : withStderr(`the runner reports it failed (returncode ${status.returncode ?? 'none'})`);
      return fail(`${where}: ${why}`);
    }
    case 'complete':
      break;
    default:
      return []; // queued, preprocessing, postprocessing: nothing to record
  }
  const updates: TaskUpdate[] = [];
  // The executors' reports come from the progress file and tails the job posted, as the REST path reads them.
  const reporter = new JobReporter(plan, {
    read: async (name) => {
      const value = name in REPORT ? text(REPORT[name as keyof typeof REPORT]) : undefined;
      return value === undefined ? undefined : Buffer.from(value);
    },
    tail: async (name) => {
      const match = EXECUTOR_STREAM.exec(name);
      return (match && text(tailKey(Number(match[1]), match[2] as 'stdout' | 'stderr'))) ?? '';
    },
  }, (update) => updates.push(update), 0);
  const progress = await reporter.sync(true);
  if (progress === undefined) return fail(withStderr(`${where}: the job's progress file did not reach tesp's staging URL (returncode ${status.returncode ?? 'none'})`));
  if (progress.endTime === undefined) return [...updates, ...fail(withStderr(`${where}: the job script did not run to its end (returncode ${status.returncode ?? 'none'})`))];
  const failed = progress.executors.some((e) => e.exitCode !== undefined && e.exitCode !== 0 && !plan.executors[e.index]?.ignoreError);
  for (const note of (text(REPORT[NOTES_FILE]) ?? '').split('\n').filter(Boolean)) updates.push({ kind: 'system-log', message: note });
  const outputProblem = (problem: string): TaskUpdate[] =>
    failed ? [{ kind: 'system-log', message: `outputs after the executor error: ${problem}` }] : fail(`${where}: ${problem}`);
  const direct = stagingResult();
  if (direct) {
    for (const note of direct.notes ?? []) updates.push({ kind: 'system-log', message: note });
    if (direct.outputs?.length) updates.push({ kind: 'output-uploaded', outputs: direct.outputs });
    if (direct.checksums && Object.keys(direct.checksums).length > 0) updates.push({ kind: 'metadata', values: direct.checksums });
    if (direct.stage_out_error) {
      const problem = outputProblem(`staging the outputs failed: ${direct.stage_out_error}`);
      if (!failed) return [...updates, ...problem];
      updates.push(...problem);
    }
  } else if (plan.outputs.length > 0) {
    const missing = missingOutputs(plan, task, text(REPORT[FILES_MANIFEST]));
    if (missing.length > 0) {
      const problem = outputProblem(missing.slice(0, 5).join('; ') + (missing.length > 5 ? `; and ${missing.length - 5} more` : ''));
      if (!failed) return [...updates, ...problem];
      updates.push(...problem);
    }
  }
  updates.push({ kind: 'finished', state: failed ? 'EXECUTOR_ERROR' : 'COMPLETE' });
  return updates;
}

/** Output files the manifest lists that did not arrive (REST cannot see a failed upload either: check receipt). */
function missingOutputs(plan: ExecutionPlan, task: StoredTask, manifestBase64: string | undefined): string[] {
  if (manifestBase64 === undefined) return ['the job\'s files manifest did not reach tesp\'s staging URL'];
  const manifest = parseFilesManifest(Buffer.from(manifestBase64, 'base64'));
  const received = task.logs[logIndexOf(task.control.attempt)]?.outputs ?? [];
  const problems: string[] = [];
  for (const output of plan.outputs) {
    let files;
    try {
      files = filesOf(output, manifest, () => undefined);
    } catch (err) {
      problems.push(`outputs[${output.index}]: ${errorMessage(err)}`);
      continue;
    }
    for (const file of files) {
      const url = redactUrl(file.url);
      if (!received.some((o) => o.url === url && o.path === file.containerPath && o.size_bytes === String(file.size))) {
        problems.push(`outputs[${output.index}]: ${file.containerPath} did not arrive at ${url} (the runner could not post it)`);
      }
    }
  }
  return problems;
}

function isPlainRelative(rel: string): boolean {
  return rel !== '' && rel.split('/').every((segment) => segment !== '' && segment !== '.' && segment !== '..');
}

async function readBounded(body: Readable, limit: number, name: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      body.destroy();
      throw new DomainError(ErrorCode.PayloadTooLarge, `${name} is larger than ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

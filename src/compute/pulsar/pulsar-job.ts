import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { errorMessage, redactUrl } from '../../common/redact';
import type { TaskUpdate } from '../../domain/task-update';
import type { TesOutputFileLog } from '../../domain/tes-task';
import type { ExecutionPlan, PlanOutput } from '../../engine/execution-plan';
import { TailBuffer } from '../../engine/executor-output';
import { parseFilesManifest, parseProgress } from '../../engine/job-progress';
import { JobReporter } from '../../engine/job-report';
import {
  FILES_MANIFEST,
  JOB_COMMAND_LINE,
  NOTES_FILE,
  PROGRESS_FILE,
  ROOT_DOWNLOAD_PREFIX,
  ROOT_UPLOAD_PREFIX,
  SCRIPT_UPLOAD_NAME,
  STAGING_REQUEST_UPLOAD_NAME,
  STAGING_RESULT_FILE,
  StagingResult,
  stagingRequestOf,
} from '../../engine/job-layout';
import { renderScript } from '../../engine/job-script';
import { globMatcher, joinUrl } from '../../engine/output-files';
import { inParallel } from '../../engine/staging';
import type { StorageRegistry } from '../../storage/storage-registry';
import { PulsarRequestError, PulsarStatus } from './pulsar-rest-client';
import type { RestRunner } from './runner-pool';

// One run of a task as a Pulsar job: stage the inputs in (through the runner's upload route, or by the runner
// itself), submit the job script, follow the job's status with no ceiling (backing off while the runner does not
// answer), report executors from the files the script writes, move the outputs to their storage URLs, clean.

export interface PulsarJobSettings {
  pollIntervalMs: number;
  pollMaxIntervalMs: number;
  logTailBytes: number;
  logRefreshMs: number;
}

export interface PulsarJobControl {
  /** Resolves to whether the store took the update (see UpdateListener). */
  emit(update: TaskUpdate): Promise<boolean>;
  /** Stop following (shutdown, or the task is held elsewhere); the job goes on. */
  detach: AbortSignal;
  /** The task is being canceled: the cancel path stops and cleans the job. */
  cancel: AbortSignal;
}

export type JobEnd = 'finished' | 'canceled' | 'detached';

const PARALLEL_TRANSFERS = 4;
/** Characters of a job's own stderr quoted in a SYSTEM_ERROR reason. */
const REASON_TAIL_CHARS = 2000;

export class PulsarJob {
  private readonly reporter: JobReporter;
  private runnerSilent = false;

  constructor(
    private readonly runner: RestRunner,
    readonly jobId: string,
    private readonly plan: ExecutionPlan,
    private readonly storage: StorageRegistry,
    private readonly settings: PulsarJobSettings,
    private readonly control: PulsarJobControl,
  ) {
    this.reporter = new JobReporter(plan, { read: (name) => this.readBytes(name), tail: (name) => this.tail(name) }, (update) => this.emit(update), settings.logRefreshMs);
  }

  private get client() {
    return this.runner.client;
  }

  private get stopped(): JobEnd | undefined {
    return this.control.detach.aborted ? 'detached' : this.control.cancel.aborted ? 'canceled' : undefined;
  }

  private emit(update: TaskUpdate): Promise<boolean> {
    return this.control.detach.aborted ? Promise.resolve(false) : this.control.emit(update);
  }

  /**
   * Reports the run's end, then cleans the job once the end is stored (not before: a tesp that died in between would
   * find the job gone and its task unfinished). An end not stored now is written later by the scheduler; the job
   * stays until a holder follows it to its end again.
   */
  private async end(update: Extract<TaskUpdate, { kind: 'finished' }>, clean = true): Promise<JobEnd> {
    const stored = await this.emit(update);
    if (clean && stored) await this.clean();
    return 'finished';
  }

  /** Whether the runner stages this plan's transfers itself: a tesp runner that serves every scheme of its URLs. */
  get directStaging(): boolean {
    const schemes = this.runner.capabilities?.staging_schemes ?? [];
    const urls = [...this.plan.inputs.flatMap((input) => (input.url !== undefined && input.content === undefined ? [input.url] : [])), ...this.plan.outputs.map((o) => o.url)];
    if (urls.length === 0 || schemes.length === 0) return false;
    // file:// names the runner's own disk there, not tesp's: such transfers always go through tesp.
    return urls.every((url) => {
      const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase() ?? 'file';
      return scheme !== 'file' && schemes.includes(scheme);
    });
  }

  /** Stages, submits and follows a new job. Never rejects: a failure is reported as SYSTEM_ERROR. */
  async run(): Promise<JobEnd> {
    try {
      const direct = this.directStaging;
      if (direct) {
        this.emit({ kind: 'system-log', message: `runner ${this.runner.entry.name} stages the inputs and outputs itself` });
        await this.uploadContents();
        await this.client.upload(this.jobId, STAGING_REQUEST_UPLOAD_NAME, 'input', JSON.stringify(stagingRequestOf(this.plan)));
      } else {
        await this.uploadInputs();
      }
      if (this.stopped) return this.stopped;
      const runtime = this.runner.capabilities?.runtime ?? this.runner.entry.runtime;
      await this.client.upload(this.jobId, SCRIPT_UPLOAD_NAME, 'input', renderScript(this.plan, { jobId: this.jobId, runtime }));
      if (this.stopped) return this.stopped;
      await this.client.submit(this.jobId, JOB_COMMAND_LINE);
      return await this.follow(direct);
    } catch (err) {
      return this.fail(err);
    }
  }

  /** Follows a job an earlier process submitted (its reports are idempotent, so all are sent again). */
  async resume(): Promise<JobEnd> {
    try {
      return await this.follow(this.directStaging);
    } catch (err) {
      return this.fail(err);
    }
  }

  /** Ends the run SYSTEM_ERROR with the failure, and cleans what the job left on the runner. */
  private async fail(err: unknown): Promise<JobEnd> {
    const end = this.stopped;
    if (end) return end;
    return this.end({ kind: 'finished', state: 'SYSTEM_ERROR', reason: `job ${this.jobId} on runner ${this.runner.entry.name}: ${errorMessage(err)}` });
  }

  private async uploadContents(): Promise<void> {
    for (const input of this.plan.inputs) {
      if (input.content !== undefined) await this.client.upload(this.jobId, rootName(input.path), 'input', input.content);
    }
  }

  /** Streams every input from its storage URL into the runner's upload route: nothing lands on tesp's disk. */
  private async uploadInputs(): Promise<void> {
    await inParallel(this.plan.inputs, PARALLEL_TRANSFERS, async (input) => {
      const label = `inputs[${input.index}] (${input.url ? redactUrl(input.url) : 'content'}) to ${input.path}`;
      try {
        if (input.content !== undefined || input.url === undefined) {
          await this.client.upload(this.jobId, rootName(input.path), 'input', input.content ?? '');
          return;
        }
        const backend = this.storage.forUrl(input.url);
        const signal = this.control.detach;
        if (input.type === 'FILE') {
          const info = await backend.stat(input.url, { signal });
          await this.client.upload(this.jobId, rootName(input.path), 'input', await backend.openRead(input.url, { signal }), info.size);
          return;
        }
        const listed = await backend.list(input.url, { signal });
        await inParallel(listed, PARALLEL_TRANSFERS, async (entry) => {
          const info = entry.size !== undefined ? { size: entry.size } : await backend.stat(entry.url, { signal });
          await this.client.upload(this.jobId, rootName(`${input.path}/${entry.relativePath}`), 'input', await backend.openRead(entry.url, { signal }), info.size);
        });
      } catch (err) {
        throw new Error(`staging ${label} failed: ${errorMessage(err)}`);
      }
    });
  }

  private async follow(direct: boolean): Promise<JobEnd> {
    let delay = this.settings.pollIntervalMs;
    for (;;) {
      if (this.stopped) return this.stopped;
      let status: PulsarStatus;
      try {
        status = await this.client.status(this.jobId);
        if (this.runnerSilent) this.emit({ kind: 'system-log', message: `runner ${this.runner.entry.name} answers again` });
        this.runnerSilent = false;
        delay = this.settings.pollIntervalMs;
      } catch (err) {
        if (!(err instanceof PulsarRequestError) || !err.transient) throw err;
        // A restarting runner is not a failed task: keep asking, less often.
        if (!this.runnerSilent) this.emit({ kind: 'system-log', message: `runner ${this.runner.entry.name} does not answer (${errorMessage(err)}); still following job ${this.jobId}` });
        this.runnerSilent = true;
        await sleep(delay, this.control);
        delay = Math.min(delay * 2, this.settings.pollMaxIntervalMs);
        continue;
      }
      if (status.status === 'running' || status.complete) await this.reporter.sync(status.complete);
      if (status.complete) return this.finish(status, direct);
      await sleep(delay, this.control);
    }
  }

  private async finish(status: PulsarStatus, direct: boolean): Promise<JobEnd> {
    const where = `job ${this.jobId} on runner ${this.runner.entry.name}`;
    const stderrTail = status.job_stderr.slice(-REASON_TAIL_CHARS).trim();
    const withStderr = (line: string) => (stderrTail ? `${line}; its stderr: ${stderrTail}` : line);
    if (this.stopped) return this.stopped;
    switch (status.status) {
      case 'lost':
        return this.end({ kind: 'finished', state: 'SYSTEM_ERROR', reason: `${where} is lost: the runner no longer knows it (its job directory is gone)` }, false);
      case 'cancelled':
        return this.end({ kind: 'finished', state: 'SYSTEM_ERROR', reason: `${where} was cancelled on the runner, not through tesp` });
      case 'failed': {
        const result = direct ? await this.stagingResult() : undefined;
        const why = result?.stage_in_error ? `staging the inputs failed: ${result.stage_in_error}`
          : result?.stage_out_error ? `staging the outputs failed: ${result.stage_out_error}`
          : withStderr(`the runner reports it failed (returncode ${status.returncode ?? 'none'})`);
        return this.end({ kind: 'finished', state: 'SYSTEM_ERROR', reason: `${where}: ${why}` });
      }
      default:
        break;
    }
    const progress = parseProgress((await this.readText(PROGRESS_FILE)) ?? '');
    if (progress.endTime === undefined) {
      return this.end({ kind: 'finished', state: 'SYSTEM_ERROR', reason: withStderr(`${where}: the job script did not run to its end (returncode ${status.returncode ?? 'none'})`) });
    }
    const failed = progress.executors.some((e: { index: number; exitCode?: number }) => e.exitCode !== undefined && e.exitCode !== 0 && !this.plan.executors[e.index]?.ignoreError);
    for (const note of ((await this.readText(NOTES_FILE)) ?? '').split('\n').filter(Boolean)) this.emit({ kind: 'system-log', message: note });
    try {
      const staged = direct ? await this.directOutputs() : await this.downloadOutputs();
      if (this.stopped) return this.stopped;
      if (staged.outputs.length > 0) this.emit({ kind: 'output-uploaded', outputs: staged.outputs });
      if (Object.keys(staged.checksums).length > 0) this.emit({ kind: 'metadata', values: staged.checksums });
    } catch (err) {
      if (this.stopped) return this.stopped;
      if (!failed) {
        return this.end({ kind: 'finished', state: 'SYSTEM_ERROR', reason: `${where}: ${errorMessage(err)}` });
      }
      this.emit({ kind: 'system-log', message: `outputs after the executor error: ${errorMessage(err)}` });
    }
    // The outputs are safe at their URLs: once the end is stored, the job directory can go.
    return this.end({ kind: 'finished', state: failed ? 'EXECUTOR_ERROR' : 'COMPLETE' });
  }

  private async directOutputs(): Promise<{ outputs: TesOutputFileLog[]; checksums: Record<string, string> }> {
    const result = await this.stagingResult();
    if (!result) throw new Error('the runner wrote no staging result');
    for (const note of result.notes ?? []) this.emit({ kind: 'system-log', message: note });
    if (result.stage_out_error) throw new Error(`staging the outputs failed: ${result.stage_out_error}`);
    return { outputs: result.outputs ?? [], checksums: result.checksums ?? {} };
  }

  /** Streams every output file from the runner's download route to its storage URL. */
  private async downloadOutputs(): Promise<{ outputs: TesOutputFileLog[]; checksums: Record<string, string> }> {
    const manifest = parseFilesManifest((await this.readBytes(FILES_MANIFEST)) ?? Buffer.alloc(0));
    const outputs: TesOutputFileLog[] = [];
    const checksums: Record<string, string> = {};
    for (const output of this.plan.outputs) {
      const label = `outputs[${output.index}]`;
      try {
        const files = filesOf(output, manifest, (message) => this.emit({ kind: 'system-log', message }));
        await inParallel(files, PARALLEL_TRANSFERS, async (file) => {
          const download = await this.client.download(this.jobId, ROOT_DOWNLOAD_PREFIX + file.rel, 'output_workdir', { signal: this.control.detach });
          const result = await this.storage.forUrl(file.url).uploadStream(download.body, file.url, { size: file.size, signal: this.control.detach });
          if (result.bytes !== file.size) throw new Error(`${file.containerPath} arrived with ${result.bytes} of its ${file.size} bytes`);
          outputs.push({ url: redactUrl(file.url), path: file.containerPath, size_bytes: String(result.bytes) });
          checksums[`sha256:${file.containerPath}`] = result.sha256;
        });
      } catch (err) {
        throw new Error(`uploading ${label} (${output.path} to ${redactUrl(output.url)}) failed: ${errorMessage(err)}`);
      }
    }
    return { outputs, checksums };
  }

  private async stagingResult(): Promise<StagingResult | undefined> {
    const text = await this.readText(STAGING_RESULT_FILE);
    if (text === undefined) return undefined;
    try {
      return JSON.parse(text) as StagingResult;
    } catch {
      return { stage_out_error: 'the runner wrote an unreadable staging result' };
    }
  }

  private async tail(name: string): Promise<string> {
    const tail = new TailBuffer(this.settings.logTailBytes);
    try {
      // A tesp runner sends only the end; a real Pulsar sends the whole file, which passes through the tail buffer.
      const download = await this.client.download(this.jobId, name, 'output_metadata', { lastBytes: this.settings.logTailBytes, signal: this.control.detach });
      await pipeline(download.body, new Writable({ write: (chunk: Buffer, _enc, done) => (tail.push(chunk), done()) }));
    } catch {
      return ''; // not written yet
    }
    return tail.text();
  }

  private async readBytes(name: string): Promise<Buffer | undefined> {
    try {
      const download = await this.client.download(this.jobId, name, 'output_metadata', { signal: this.control.detach });
      const chunks: Buffer[] = [];
      for await (const chunk of download.body as Readable) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks);
    } catch (err) {
      // Pulsar answers a missing file with 500: "not there (yet)". A runner that does not answer is another matter.
      if (err instanceof PulsarRequestError && err.statusCode === undefined) throw err;
      return undefined;
    }
  }

  private async readText(name: string): Promise<string | undefined> {
    return (await this.readBytes(name))?.toString('utf8');
  }

  async clean(): Promise<void> {
    try {
      await this.client.clean(this.jobId);
    } catch (err) {
      this.emit({ kind: 'system-log', message: `could not clean job ${this.jobId} on runner ${this.runner.entry.name}: ${errorMessage(err)}` });
    }
  }
}

/** The upload name of a container path under the task root. */
export function rootName(containerPath: string): string {
  return ROOT_UPLOAD_PREFIX + containerPath.replace(/^\/+/, '');
}

interface OutputFileRef {
  rel: string;
  containerPath: string;
  url: string;
  size: number;
}

/** Which files of the job's manifest an output names (as output-files.ts does on a local disk). */
export function filesOf(output: PlanOutput, manifest: ReadonlyArray<{ path: string; size: number }>, log: (message: string) => void): OutputFileRef[] {
  const rel = output.path.replace(/^\/+/, '');
  const label = `outputs[${output.index}]`;
  if (output.glob) {
    const prefix = output.glob.prefix.replace(/^\/+/, '').replace(/\/+$/, '');
    const matches = globMatcher(rel);
    const files = manifest.filter((file) => matches(file.path)).sort((a, b) => (a.path < b.path ? -1 : 1));
    if (files.length === 0) log(`${label}: ${output.path} matched no files`);
    return files.map((file) => ({ rel: file.path, containerPath: `/${file.path}`, url: joinUrl(output.url, prefix ? file.path.slice(prefix.length + 1) : file.path), size: file.size }));
  }
  if (output.type === 'FILE') {
    const file = manifest.find((f) => f.path === rel);
    if (!file) throw new Error(`${output.path} does not exist or is not a file`);
    return [{ rel, containerPath: output.path, url: output.url, size: file.size }];
  }
  const under = manifest.filter((file) => rel === '' || file.path.startsWith(rel + '/')).sort((a, b) => (a.path < b.path ? -1 : 1));
  return under.map((file) => {
    const inside = rel === '' ? file.path : file.path.slice(rel.length + 1);
    return { rel: file.path, containerPath: `/${file.path}`, url: joinUrl(output.url, inside), size: file.size };
  });
}

function sleep(ms: number, control: PulsarJobControl): Promise<void> {
  return new Promise((resolve) => {
    const signals = [control.detach, control.cancel];
    const done = () => {
      clearTimeout(timer);
      for (const s of signals) s.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    for (const s of signals) s.addEventListener('abort', done, { once: true });
  });
}

import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Logger } from '../../common/logger';
import { errorMessage } from '../../common/redact';
import type { TaskUpdate } from '../../domain/task-update';
import type { BackendRef, StoredTask } from '../../domain/tes-task';
import { buildExecutionPlan, ExecutionPlan, TaskLayout } from '../../engine/execution-plan';
import { JOB_COMMAND_LINE, NOTES_FILE } from '../../engine/job-layout';
import { JobReporter, localJobFiles } from '../../engine/job-report';
import { renderScript, ScriptRuntime } from '../../engine/job-script';
import type { SlurmClient, SlurmJobState } from '../../engine/slurm-client';
import { renderBatchScript, SlurmJobFiles, slurmJobFiles, slurmJobName, SlurmSettings, taskSubmission } from '../../engine/slurm-job';
import { jobPhase, SlurmJobWatch } from '../../engine/slurm-job-watch';
import type { StagedOutputs, Staging } from '../../engine/staging';
import type { RunEnd } from '../../engine/task-runner';

// One attempt of a task as one Slurm job. The task directory is a job directory (job-layout.ts) on the shared work
// directory: inputs are staged into inputs/root on this host, the rendered job script runs on a node from
// working/, and tesp reads metadata/tesp there to report the executors. Outputs are staged from working/root after
// the job. The Slurm job id is written to slurm/job-id and reported in the task log's metadata (slurm_job_id).

export interface SlurmRunSettings {
  slurm: SlurmSettings;
  containers: ScriptRuntime;
  apptainerCommand: string;
  allowNetwork: boolean;
  runAsRoot: boolean;
  executorUser: string;
  logTailBytes: number;
  logRefreshMs: number;
  launchTimeoutMs: number;
}

export interface SlurmRunParts {
  client: SlurmClient;
  watch: SlurmJobWatch;
  staging: Staging;
  settings: SlurmRunSettings;
  logger: Logger;
}

export interface SlurmRunControl {
  /** Resolves to whether the store took the update. */
  emit(update: TaskUpdate): Promise<boolean>;
  detach: AbortSignal;
  cancel: AbortSignal;
}

/** The exit code given to an executor its job was killed under (TIMEOUT, OUT_OF_MEMORY): 128 + SIGKILL. */
const KILLED = 137;
/** Characters of the batch script's own output quoted in a reason. */
const REASON_TAIL_CHARS = 2000;

type Finished = Extract<TaskUpdate, { kind: 'finished' }>;

export class SlurmTaskRun {
  readonly plan: ExecutionPlan;
  readonly files: SlurmJobFiles;
  readonly jobName: string;
  jobId?: string;
  private readonly reporter: JobReporter;
  private readonly stop: AbortSignal;

  constructor(
    private readonly task: StoredTask,
    readonly taskDir: string,
    /** The backend reference submit gave; the job id joins it once sbatch answered. */
    private readonly ref: BackendRef,
    private readonly parts: SlurmRunParts,
    private readonly control: SlurmRunControl,
  ) {
    this.plan = buildExecutionPlan(task);
    this.files = slurmJobFiles(taskDir);
    this.jobName = slurmJobName(task.id, task.control.attempt);
    this.stop = AbortSignal.any([control.detach, control.cancel]);
    this.reporter = new JobReporter(this.plan, localJobFiles(taskDir, parts.settings.logTailBytes), (update) => this.emit(update), parts.settings.logRefreshMs);
  }

  private get ended(): RunEnd | undefined {
    return this.control.detach.aborted ? 'detached' : this.control.cancel.aborted ? 'canceled' : undefined;
  }

  private emit(update: TaskUpdate): Promise<boolean> {
    return this.control.detach.aborted ? Promise.resolve(false) : this.control.emit(update);
  }

  /** The layouts the staging sees: inputs land in inputs/root, outputs are read from working/root. */
  private layout(part: 'inputs' | 'working'): TaskLayout {
    return { taskDir: this.taskDir, rootDir: path.join(this.taskDir, part, 'root') };
  }

  /** Stages, submits and follows a new job. Never rejects: a failure is reported as SYSTEM_ERROR. */
  async start(): Promise<RunEnd> {
    try {
      if (this.plan.executors.length === 0) {
        // A transfer only: nothing for Slurm to run.
        const staged = await this.parts.staging.transferDirect(this.plan, this.transfers());
        if (this.ended) return this.ended;
        this.reportOutputs(staged);
        return this.end({ kind: 'finished', state: 'COMPLETE' });
      }
      await this.parts.staging.stageInputs(this.plan, this.layout('inputs'), this.transfers());
      if (this.ended) return this.ended;
      const script = renderScript(this.plan, {
        jobId: `${this.task.id}-${this.task.control.attempt}`,
        runtime: this.parts.settings.containers,
        allowNetwork: this.parts.settings.allowNetwork,
        apptainerCommand: this.parts.settings.apptainerCommand,
        runAsRoot: this.parts.settings.runAsRoot,
        executorUser: this.parts.settings.executorUser,
      });
      await fs.mkdir(path.join(this.taskDir, 'inputs', 'tesp'), { recursive: true });
      await fs.mkdir(path.join(this.taskDir, 'working'), { recursive: true });
      await fs.mkdir(path.join(this.taskDir, 'metadata', 'tesp'), { recursive: true });
      await fs.mkdir(this.files.dir, { recursive: true });
      await fs.writeFile(path.join(this.taskDir, 'inputs', 'tesp', 'job.sh'), script, { mode: 0o755 });
      await fs.writeFile(this.files.batchScript, renderBatchScript(this.files, JOB_COMMAND_LINE), { mode: 0o755 });
      if (this.ended) return this.ended;
      const jobId = await this.parts.client.submit({
        script: this.files.batchScript,
        jobName: this.jobName,
        cwd: path.join(this.taskDir, 'working'),
        output: this.files.output,
        ...taskSubmission(this.task.resources, this.parts.settings.slurm),
      });
      this.jobId = jobId;
      await fs.writeFile(this.files.jobIdFile, `${jobId}\n`);
      this.parts.logger.info({ taskId: this.task.id, slurm_job_id: jobId, job_name: this.jobName }, 'slurm job submitted');
      void this.emit({ kind: 'backend-ref', ref: { ...this.ref, job_id: jobId } });
      void this.emit({ kind: 'metadata', values: { slurm_job_id: jobId, slurm_job_name: this.jobName } });
      return await this.follow(jobId);
    } catch (err) {
      return this.fail(err);
    }
  }

  /** Follows a job an earlier process submitted (its reports are idempotent, so all are sent again). */
  async resume(jobId: string): Promise<RunEnd> {
    this.jobId = jobId;
    try {
      return await this.follow(jobId);
    } catch (err) {
      return this.fail(err);
    }
  }

  private async fail(err: unknown): Promise<RunEnd> {
    if (this.ended) return this.ended;
    const where = this.jobId ? `Slurm job ${this.jobId}` : 'the Slurm job';
    return this.end({ kind: 'finished', state: 'SYSTEM_ERROR', reason: `${where}: ${errorMessage(err)}` });
  }

  private transfers() {
    return { signal: this.stop, log: (message: string) => void this.emit({ kind: 'system-log', message }) };
  }

  private async follow(jobId: string): Promise<RunEnd> {
    let runningSince: number | undefined;
    let silent = false;
    let lastWait = '';
    for (;;) {
      const lookup = await this.parts.watch.next({ id: jobId, name: this.jobName }, this.stop);
      if (this.ended) return this.ended;
      if (lookup.kind === 'unreachable') {
        // A restarting controller is not a failed task: keep asking.
        if (!silent) void this.emit({ kind: 'system-log', message: `Slurm does not answer (${lookup.error}); still following job ${jobId}` });
        silent = true;
        continue;
      }
      if (silent) void this.emit({ kind: 'system-log', message: 'Slurm answers again' });
      silent = false;
      if (lookup.kind === 'unknown') return this.unknownJob(jobId);
      const { state } = lookup;
      const phase = jobPhase(state.state);
      if (phase === 'waiting') {
        const line = `Slurm job ${jobId} is ${state.state} (${state.reason})`;
        if (line !== lastWait) void this.emit({ kind: 'system-log', message: line });
        lastWait = line;
        runningSince = undefined;
        continue;
      }
      if (phase === 'running') {
        if (await exists(this.files.launched)) {
          await this.reporter.sync(false);
          continue;
        }
        // Slurm can show a job RUNNING that never got a process (a slurmd restarted while launching it).
        runningSince ??= Date.now();
        if (Date.now() - runningSince < this.parts.settings.launchTimeoutMs) continue;
        await this.parts.client.cancel(jobId).catch(() => undefined);
        return this.end({
          kind: 'finished',
          state: 'SYSTEM_ERROR',
          reason: `Slurm job ${jobId} stayed RUNNING for ${Math.round(this.parts.settings.launchTimeoutMs / 1000)} s without its script starting on the node; it was cancelled`,
        });
      }
      return this.finish(jobId, state);
    }
  }

  /** Slurm lists the job nowhere: it ended long ago (and accounting is off), or it was lost. */
  private async unknownJob(jobId: string): Promise<RunEnd> {
    const progress = await this.reporter.sync(true);
    if (progress?.endTime !== undefined) return this.finish(jobId, { jobId, state: 'COMPLETED', reason: 'None' });
    return this.end({ kind: 'finished', state: 'SYSTEM_ERROR', reason: `Slurm no longer knows job ${jobId} (neither squeue nor sacct lists it), and its script did not run to its end` });
  }

  private async finish(jobId: string, state: SlurmJobState): Promise<RunEnd> {
    const progress = await this.reporter.sync(true);
    const where = `Slurm job ${jobId}`;
    const exit = state.exitCode ? `, exit ${state.exitCode}` : '';
    const withOutput = async (line: string) => {
      const said = (await fs.readFile(this.files.output, 'utf8').catch(() => '')).slice(-REASON_TAIL_CHARS).trim();
      return said ? `${line}; the job's own output: ${said}` : line;
    };
    switch (state.state) {
      case 'COMPLETED':
        if (progress?.endTime === undefined) return this.end({ kind: 'finished', state: 'SYSTEM_ERROR', reason: await withOutput(`${where} completed but its script did not run to its end`) });
        return this.collect(false);
      case 'TIMEOUT':
      case 'OUT_OF_MEMORY': {
        const why = state.state === 'TIMEOUT' ? `reached its time limit (TIMEOUT${this.limit('timeLimit')})` : `ran out of memory (OUT_OF_MEMORY${this.limit('memMb')})`;
        const killed = await this.reporter.endUnfinished(KILLED);
        if (killed.length === 0) return this.end({ kind: 'finished', state: 'SYSTEM_ERROR', reason: await withOutput(`${where} ${why} before an executor ran`) });
        void this.emit({ kind: 'system-log', message: `${where} ${why}: Slurm killed executors[${killed.join(', ')}]` });
        return this.collect(true, `${where} ${why}`);
      }
      case 'PREEMPTED':
        await this.reporter.endUnfinished(KILLED);
        return this.end({ kind: 'finished', state: 'PREEMPTED', reason: `${where} was preempted by Slurm (${state.reason})` });
      case 'NODE_FAIL':
      case 'BOOT_FAIL':
        await this.reporter.endUnfinished(KILLED);
        return this.end({ kind: 'finished', state: 'SYSTEM_ERROR', reason: `${where} ended ${state.state}: its node failed (${state.reason})` });
      case 'CANCELLED':
        await this.reporter.endUnfinished(KILLED);
        return this.end({ kind: 'finished', state: 'SYSTEM_ERROR', reason: `${where} was cancelled in Slurm, not through tesp (${state.reason})` });
      case 'FAILED':
        await this.reporter.endUnfinished(KILLED);
        return this.end({ kind: 'finished', state: 'SYSTEM_ERROR', reason: await withOutput(`${where} FAILED (${state.reason}${exit}): the job script could not run to its end`) });
      default:
        await this.reporter.endUnfinished(KILLED);
        return this.end({ kind: 'finished', state: 'SYSTEM_ERROR', reason: await withOutput(`${where} ended in the Slurm state ${state.state} (${state.reason}${exit})`) });
    }
  }

  /** ", --time=1" for the reason of a job killed at a limit. */
  private limit(which: 'timeLimit' | 'memMb'): string {
    const submission = taskSubmission(this.task.resources, this.parts.settings.slurm);
    if (which === 'timeLimit') return submission.timeLimit ? `, --time=${submission.timeLimit}` : '';
    return submission.memMb ? `, --mem=${submission.memMb}M` : '';
  }

  /** Notes, then the outputs; after an executor error their failure is only noted. */
  private async collect(executorKilled: boolean, killedReason?: string): Promise<RunEnd> {
    const progress = await this.reporter.sync(true);
    const failed = executorKilled || (progress?.executors ?? []).some((e) => e.exitCode !== undefined && e.exitCode !== 0 && !this.plan.executors[e.index]?.ignoreError);
    const notes = await fs.readFile(path.join(this.taskDir, 'metadata', ...NOTES_FILE.split('/')), 'utf8').catch(() => '');
    for (const note of notes.split('\n').filter(Boolean)) void this.emit({ kind: 'system-log', message: note });
    try {
      this.reportOutputs(await this.parts.staging.stageOutputs(this.plan, this.layout('working'), this.transfers()));
    } catch (err) {
      if (this.ended) return this.ended;
      if (!failed) return this.end({ kind: 'finished', state: 'SYSTEM_ERROR', reason: errorMessage(err) });
      void this.emit({ kind: 'system-log', message: `outputs after the executor error: ${errorMessage(err)}` });
    }
    if (this.ended) return this.ended;
    return this.end({ kind: 'finished', state: failed ? 'EXECUTOR_ERROR' : 'COMPLETE', ...(killedReason ? { reason: killedReason } : {}) });
  }

  private reportOutputs(staged: StagedOutputs): void {
    if (staged.outputs.length > 0) void this.emit({ kind: 'output-uploaded', outputs: staged.outputs });
    if (Object.keys(staged.checksums).length > 0) void this.emit({ kind: 'metadata', values: staged.checksums });
  }

  private async end(update: Finished): Promise<RunEnd> {
    await this.emit(update);
    return 'finished';
  }
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(() => true, () => false);
}

import { statfs, type FileHandle } from 'node:fs/promises';
import { errorMessage } from '../common/redact';
import type { TaskUpdate } from '../domain/task-update';
import type { ExecutionPlan, PlanExecutor, TaskLayout } from './execution-plan';
import { ExecutorOutput, OutputFiles } from './executor-output';
import type { ExecutorRuntime, LeftoverExecutor, RunningExecutor } from './executor-runtime';
import type { StagedOutputs, Staging, TransferProgress } from './staging';
import { openInRootForReading, openInRootForWriting } from './task-root';

// The run loop: turns a plan into TaskUpdates. Stage in, executors in order through a runtime, stage out, report;
// a plan without executors is a transfer, streamed from sources to destinations (Staging.transferDirect).
// Plain TypeScript: the local compute backend runs it, and so will `tesp runner`.

export interface RunnerSettings {
  /** Bytes of each executor's stdout and stderr kept for the task log (the last ones). */
  logTailBytes: number;
  /** How often a running executor's tails are reported. */
  logRefreshMs: number;
}

export interface RunControl {
  /** Where updates go. Nothing is reported after `detach`. */
  emit(update: TaskUpdate): void;
  /** Stops following and reporting; the work goes on (a shutdown, or another replica holds the task now). */
  detach: AbortSignal;
  /**
   * The task is being canceled: staging and pulls stop and nothing more starts. The runtime's removeAll kills the
   * executor in progress; its exit is still reported, then the run ends without outputs or a `finished` update.
   */
  cancel: AbortSignal;
  /** Executors an earlier run left: adopted instead of staging again and starting them anew. */
  leftovers?: readonly LeftoverExecutor[];
  /** Progress of long transfers. */
  progress?: (event: TransferProgress) => void;
}

export type RunEnd = 'finished' | 'canceled' | 'detached';

type Emit = (update: TaskUpdate) => void;

export class TaskRunner {
  constructor(
    readonly runtime: ExecutorRuntime,
    private readonly staging: Staging,
    private readonly settings: RunnerSettings,
  ) {}

  /** Runs the plan to its end; resolves to how it ended. Never rejects: a failure is reported as SYSTEM_ERROR. */
  async run(plan: ExecutionPlan, layout: TaskLayout, control: RunControl): Promise<RunEnd> {
    const { detach, cancel } = control;
    const stop = AbortSignal.any([detach, cancel]);
    const emit: Emit = (update) => {
      if (!detach.aborted) control.emit(update);
    };
    const ended = (): RunEnd | undefined => (detach.aborted ? 'detached' : cancel.aborted ? 'canceled' : undefined);
    const transfers = { signal: stop, log: (message: string) => emit({ kind: 'system-log', message }), progress: control.progress };
    try {
      const leftovers = control.leftovers;
      if (plan.executors.length === 0) {
        // A transfer: each file goes from its source to its destination without a stop on this host's disk.
        const staged = await this.staging.transferDirect(plan, transfers);
        const end = ended();
        if (end) return end;
        reportOutputs(staged, emit);
        emit({ kind: 'finished', state: 'COMPLETE' });
        return 'finished';
      }
      if (!leftovers) await this.staging.stageInputs(plan, layout, transfers);
      let end = ended();
      if (end) return end;
      emit({ kind: 'running' });
      let executorFailed = false;
      /** Set when a failed executor had filled the task directory's file system: tesp's fault to report, not the task's. */
      let diskFull: string | undefined;
      const lastLeftover = Math.max(-1, ...(leftovers ?? []).map((l) => l.index));
      for (const executor of plan.executors) {
        if ((end = ended())) return end;
        const leftover = leftovers?.find((l) => l.index === executor.index && l.started);
        if (leftovers && !leftover && executor.index < lastLeftover) throw new Error(`executors[${executor.index}] left no container behind`);
        const exitCode = await this.runExecutor(plan, executor, layout, leftover !== undefined, emit, control, stop);
        if ((end = ended())) return end;
        if (exitCode !== 0 && !executor.ignoreError) {
          executorFailed = true;
          diskFull = await fullDiskReason(layout, `executors[${executor.index}] exited with code ${exitCode}`);
          break;
        }
      }
      // Outputs are collected after an executor error too: partial results help to see what went wrong.
      try {
        reportOutputs(await this.staging.stageOutputs(plan, layout, transfers), emit);
      } catch (err) {
        if ((end = ended())) return end;
        if (!executorFailed) throw err;
        transfers.log(`outputs after the executor error: ${errorMessage(err)}`);
      }
      if ((end = ended())) return end;
      if (diskFull) emit({ kind: 'finished', state: 'SYSTEM_ERROR', reason: diskFull });
      else emit({ kind: 'finished', state: executorFailed ? 'EXECUTOR_ERROR' : 'COMPLETE' });
      return 'finished';
    } catch (err) {
      const end = ended();
      if (end) return end;
      const message = errorMessage(err);
      const reason = NO_SPACE.test(message) ? `${message} (no space left on device in the task directory ${layout.taskDir})` : message;
      emit({ kind: 'finished', state: 'SYSTEM_ERROR', reason });
      return 'finished';
    }
  }

  /** Runs (or adopts) one executor; `stop` aborts on detach or cancel, before the executor has started. */
  private async runExecutor(plan: ExecutionPlan, executor: PlanExecutor, layout: TaskLayout, adopt: boolean, emit: Emit, control: RunControl, stop: AbortSignal): Promise<number> {
    let files: OutputFiles;
    let stdin: FileHandle | undefined;
    try {
      files = await openOutputFiles(layout, executor);
      stdin = executor.stdin !== undefined && !adopt ? await labelled('stdin', openInRootForReading(layout.rootDir, executor.stdin)) : undefined;
    } catch (err) {
      // As in a shell whose redirection fails: the executor fails, and its stderr says why.
      const now = new Date().toISOString();
      emit({ kind: 'executor-started', index: executor.index, startTime: now });
      emit({ kind: 'executor-finished', index: executor.index, endTime: now, exitCode: 1, stdout: '', stderr: `tesp: executors[${executor.index}]: ${errorMessage(err)}\n` });
      return 1;
    }
    const output = new ExecutorOutput(this.settings.logTailBytes, files);
    const closeOutput = async () => {
      const fileError = await output.close();
      if (fileError) emit({ kind: 'system-log', message: `executors[${executor.index}]: writing its stdout/stderr file failed: ${errorMessage(fileError)}` });
    };
    let running: RunningExecutor;
    try {
      running = adopt
        ? await this.runtime.adopt(plan.taskId, executor.index, output, control.detach)
        : await this.runtime.start(plan, executor, layout, { output, stdin: stdin?.createReadStream() }, { abort: stop, detach: control.detach });
    } catch (err) {
      await stdin?.close().catch(() => undefined);
      await closeOutput();
      throw err;
    }
    emit({ kind: 'executor-started', index: executor.index, startTime: running.startTime });
    const refresh = setInterval(() => {
      const changes = output.takeChanges();
      if (changes) emit({ kind: 'executor-output', index: executor.index, ...changes });
    }, this.settings.logRefreshMs);
    try {
      const exit = await running.exited;
      await closeOutput();
      emit({ kind: 'executor-finished', index: executor.index, endTime: exit.endTime, exitCode: exit.exitCode, ...output.snapshot() });
      return exit.exitCode;
    } catch (err) {
      await closeOutput();
      throw err;
    } finally {
      clearInterval(refresh);
    }
  }
}

/** How a failure caused by a full file system shows in errors from Node and the storage backends. */
const NO_SPACE = /ENOSPC|no space left on device/i;

/** Free bytes below which a failed executor is taken to have run out of space (a full disk fails every write). */
const FULL_DISK_BYTES = 1024 * 1024;

/** The reason to end with when the task directory's file system is full after `what`; undefined when it is not. */
async function fullDiskReason(layout: TaskLayout, what: string): Promise<string | undefined> {
  const fs = await statfs(layout.taskDir).catch(() => undefined);
  if (!fs || fs.bavail * fs.bsize >= FULL_DISK_BYTES) return undefined;
  return `${what} with no space left on device in the task directory ${layout.taskDir} (${fs.bavail * fs.bsize} bytes free)`;
}

function reportOutputs(staged: StagedOutputs, emit: Emit): void {
  if (staged.outputs.length > 0) emit({ kind: 'output-uploaded', outputs: staged.outputs });
  if (Object.keys(staged.checksums).length > 0) emit({ kind: 'metadata', values: staged.checksums });
}

/** The executor's stdout and stderr files, opened safely in the task root (one handle when both name one file). */
async function openOutputFiles(layout: TaskLayout, executor: PlanExecutor): Promise<OutputFiles> {
  const stdout = executor.stdout !== undefined ? await labelled('stdout', openInRootForWriting(layout.rootDir, executor.stdout)) : undefined;
  try {
    const stderr = executor.stderr === undefined ? undefined
      : executor.stderr === executor.stdout ? stdout
      : await labelled('stderr', openInRootForWriting(layout.rootDir, executor.stderr));
    return { stdout, stderr };
  } catch (err) {
    await stdout?.close();
    throw err;
  }
}

/** Prefixes a failure with the stream it concerns ("stdin /io/in does not exist in the task"). */
function labelled<T>(stream: string, opening: Promise<T>): Promise<T> {
  return opening.catch((err: unknown) => {
    throw new Error(`${stream} ${errorMessage(err)}`);
  });
}

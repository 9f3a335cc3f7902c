import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Logger } from '../../common/logger';
import { errorMessage } from '../../common/redact';
import type { StagingService, TransferProgress } from '../../storage/staging.service';
import { TaskRecord, TesState } from '../../tasks/tes-task';
import type { ComputeBackend, ResumeOutcome, TaskUpdate, UpdateListener } from '../compute-backend';
import { buildExecutionPlan, ExecutionPlan, PlanExecutor } from '../execution-plan';
import { ExecutorOutput } from './executor-output';
import type { ExecutorRuntime, LeftoverExecutor, RunningExecutor } from './executor-runtime';

export interface LocalBackendSettings {
  /** Task directories live at <workDir>/<task id> (data_dir/work). */
  workDir: string;
  logTailBytes: number;
  logRefreshMs: number;
  keepTaskDirs: boolean;
}

interface Run {
  abort: AbortController;
  /** Set by detach(): stop reporting and leave the executors running for the next process. */
  detached: boolean;
  done: Promise<void>;
}

type Emit = (update: TaskUpdate) => void;

/**
 * Runs tasks on this machine: stage in, executors in order through a runtime, stage out, report. The plan
 * ("what to run") comes from buildExecutionPlan; the runtime ("how") is Docker or plain processes.
 */
export class LocalComputeBackend implements ComputeBackend {
  readonly name = 'local';
  readonly supportedBackendParameters = ['shm_size_gb'] as const;
  private listener?: UpdateListener;
  private readonly runs = new Map<string, Run>();

  constructor(
    private readonly runtime: ExecutorRuntime,
    private readonly staging: StagingService,
    private readonly settings: LocalBackendSettings,
    private readonly logger: Logger,
  ) {}

  onUpdate(listener: UpdateListener): void {
    this.listener = listener;
  }

  activeCount(): number {
    return this.runs.size;
  }

  isRunning(taskId: string): boolean {
    return this.runs.has(taskId);
  }

  async submit(task: TaskRecord): Promise<void> {
    if (this.runs.has(task.id)) return;
    this.begin(task, undefined);
  }

  async cancel(taskId: string): Promise<void> {
    const run = this.runs.get(taskId);
    run?.abort.abort();
    // Also containers this process does not track (left by an earlier one).
    await this.runtime.removeAll(taskId);
    if (run) await run.done;
    else await this.removeTaskDir(taskId);
  }

  async resume(task: TaskRecord): Promise<ResumeOutcome> {
    if (this.runs.has(task.id)) return { kind: 'resumed', detail: 'already running' };
    const leftovers = await this.runtime.leftovers(task.id);
    if (leftovers.length > 0) {
      this.begin(task, leftovers);
      const running = leftovers.filter((l) => l.running).length;
      return { kind: 'resumed', detail: `adopted ${leftovers.length} executor container(s), ${running} still running` };
    }
    if (task.state === TesState.INITIALIZING) {
      this.begin(task, undefined);
      return { kind: 'resumed', detail: 'no executor had started; staging the inputs again' };
    }
    await this.removeTaskDir(task.id);
    return {
      kind: 'lost',
      reason: this.runtime.survivesRestart
        ? 'its executor containers are gone'
        : `the ${this.runtime.kind} runtime cannot adopt executors after a restart`,
    };
  }

  async detach(): Promise<void> {
    const runs = [...this.runs.entries()];
    for (const [, run] of runs) {
      run.detached = true;
      run.abort.abort();
    }
    // Without containers nothing survives: stop the processes rather than orphan them.
    if (!this.runtime.survivesRestart) await Promise.all(runs.map(([id]) => this.runtime.removeAll(id)));
    await Promise.all(runs.map(([, run]) => run.done));
  }

  private begin(task: TaskRecord, leftovers: LeftoverExecutor[] | undefined): void {
    const run: Run = { abort: new AbortController(), detached: false, done: Promise.resolve() };
    this.runs.set(task.id, run);
    run.done = this.execute(task, run, leftovers)
      .catch((err: unknown) => this.logger.error({ taskId: task.id, err: errorMessage(err) }, 'local backend run failed'))
      .finally(() => {
        if (this.runs.get(task.id) === run) this.runs.delete(task.id);
      });
  }

  private async execute(task: TaskRecord, run: Run, leftovers: LeftoverExecutor[] | undefined): Promise<void> {
    const signal = run.abort.signal;
    // After cancel or detach nothing more is reported: the lifecycle has settled the task, or the next process will.
    const emit: Emit = (update) => {
      if (!signal.aborted) this.listener?.(task.id, update);
    };
    const log = (message: string) => emit({ kind: 'system-log', message });
    const plan = buildExecutionPlan(task, this.taskDir(task.id));
    const progress = (event: TransferProgress) => this.logger.info({ taskId: task.id, ...event }, event.done ? 'transfer finished' : 'transfer progress');
    const options = { signal, log, progress };
    try {
      if (!leftovers) {
        // A fresh start (also of a task left INITIALIZING): nothing of an earlier attempt may linger.
        await this.runtime.removeAll(task.id);
        await fs.rm(plan.taskDir, { recursive: true, force: true });
        await this.staging.stageInputs(plan, options);
      }
      if (signal.aborted) return;
      if (plan.executors.length > 0) emit({ kind: 'running' });
      let executorFailed = false;
      for (const executor of plan.executors) {
        if (signal.aborted) return;
        const leftover = leftovers?.find((l) => l.index === executor.index && l.started);
        if (leftovers && !leftover && executor.index < Math.max(...leftovers.map((l) => l.index))) {
          throw new Error(`executors[${executor.index}] left no container behind`);
        }
        const exitCode = await this.runExecutor(plan, executor, leftover !== undefined, emit, signal);
        if (exitCode !== 0 && !executor.ignoreError) {
          executorFailed = true;
          break;
        }
      }
      if (signal.aborted) return;
      // Outputs are collected after an executor error too: partial results help to see what went wrong.
      try {
        const staged = await this.staging.stageOutputs(plan, options);
        if (staged.outputs.length > 0) emit({ kind: 'output-uploaded', outputs: staged.outputs });
        if (Object.keys(staged.checksums).length > 0) emit({ kind: 'metadata', values: staged.checksums });
      } catch (err) {
        if (!executorFailed) throw err;
        log(`outputs after the executor error: ${errorMessage(err)}`);
      }
      emit({ kind: 'finished', state: executorFailed ? 'EXECUTOR_ERROR' : 'COMPLETE' });
    } catch (err) {
      if (!signal.aborted) emit({ kind: 'finished', state: 'SYSTEM_ERROR', reason: errorMessage(err) });
    } finally {
      if (!run.detached) await this.cleanUp(task.id);
    }
  }

  private async runExecutor(plan: ExecutionPlan, executor: PlanExecutor, adopt: boolean, emit: Emit, signal: AbortSignal): Promise<number> {
    for (const file of [executor.stdoutHostPath, executor.stderrHostPath]) if (file) await fs.mkdir(path.dirname(file), { recursive: true });
    const output = new ExecutorOutput(this.settings.logTailBytes, executor.stdoutHostPath, executor.stderrHostPath);
    const closeOutput = async () => {
      const fileError = await output.close();
      if (fileError) emit({ kind: 'system-log', message: `executors[${executor.index}]: writing its stdout/stderr file failed: ${errorMessage(fileError)}` });
    };
    let running: RunningExecutor;
    try {
      running = adopt
        ? await this.runtime.adopt(plan.taskId, executor.index, output, signal)
        : await this.runtime.start(plan, executor, output, signal);
    } catch (err) {
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

  private taskDir(taskId: string): string {
    return path.join(this.settings.workDir, taskId);
  }

  private async removeTaskDir(taskId: string): Promise<void> {
    if (!this.settings.keepTaskDirs) await fs.rm(this.taskDir(taskId), { recursive: true, force: true });
  }

  /** Containers go when the task ends (not earlier: a restarted tesp reads exit codes from them). */
  private async cleanUp(taskId: string): Promise<void> {
    try {
      await this.runtime.removeAll(taskId);
      await this.removeTaskDir(taskId);
    } catch (err) {
      this.logger.warn({ taskId, err: errorMessage(err) }, 'could not clean up after a task');
    }
  }
}

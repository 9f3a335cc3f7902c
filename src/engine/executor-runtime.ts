import type { Readable } from 'node:stream';
import type { ExecutionPlan, PlanExecutor, TaskLayout } from './execution-plan';
import type { ExecutorOutput } from './executor-output';

// How a plan's executors run. Two implementations: DockerRuntime (containers) and ProcessRuntime (plain child
// processes, for hosts without Docker). Slurm joins later.

export interface ExecutorExit {
  exitCode: number;
  startTime: string;
  endTime: string;
}

export interface RunningExecutor {
  readonly startTime: string;
  /**
   * Settles when the executor has exited and all its output has been written to `output`; also when it was
   * killed (removeAll), with the exit code the kill gave it. Rejects when the `detach` signal aborts first: the
   * runtime stops following and leaves the executor running.
   */
  readonly exited: Promise<ExecutorExit>;
}

/** An executor an earlier run left behind, found by its labels. */
export interface LeftoverExecutor {
  index: number;
  running: boolean;
  /** False for a container that was created but never started (its process died in between). */
  started: boolean;
}

export interface ExecutorIo {
  output: ExecutorOutput;
  /** The executor's stdin, opened already, when the task names a file for it. */
  stdin?: Readable;
}

export interface StartSignals {
  /** Gives up before the executor started (cancel or detach during a pull or a create). */
  abort: AbortSignal;
  /** Stops following a started executor without stopping it. */
  detach: AbortSignal;
}

export interface ExecutorRuntime {
  readonly kind: 'docker' | 'process';
  /** Whether executors outlive the process that started them and can be adopted by another run. */
  readonly survivesRestart: boolean;
  /**
   * Where this runtime's executors live ("docker engine <id>", "host <name>"): a replica adopts or stops only
   * executors at its own location.
   */
  location(): Promise<string>;
  start(plan: ExecutionPlan, executor: PlanExecutor, layout: TaskLayout, io: ExecutorIo, signals: StartSignals): Promise<RunningExecutor>;
  /** Executors of a task left by an earlier run, by executor index. */
  leftovers(taskId: string): Promise<LeftoverExecutor[]>;
  /** Follows a leftover executor, replaying its output from the start. */
  adopt(taskId: string, index: number, output: ExecutorOutput, detach: AbortSignal): Promise<RunningExecutor>;
  /**
   * Stops (SIGTERM, then SIGKILL after the stop timeout) and removes the executors of a task at this location;
   * with `leftovers`, also ones no run here follows (an earlier process's, found by label or by their environment).
   * Resolves when they are gone, to how many were still running.
   */
  removeAll(taskId: string, layout: TaskLayout, options: { leftovers: boolean }): Promise<number>;
}

export function executorName(taskId: string, index: number): string {
  return `tesp-${taskId}-${index}`;
}

/** The rejection of `exited` when following stopped because the run was detached. */
export function abortedError(): Error {
  const err = new Error('the run was stopped');
  err.name = 'AbortError';
  return err;
}

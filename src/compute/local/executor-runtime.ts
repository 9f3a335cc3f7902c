import type { ExecutionPlan, PlanExecutor } from '../execution-plan';
import type { ExecutorOutput } from './executor-output';

// How the local backend runs one executor. Two implementations: DockerRuntime (containers) and
// ProcessRuntime (plain child processes, for hosts without Docker).

export interface ExecutorExit {
  exitCode: number;
  startTime: string;
  endTime: string;
}

export interface RunningExecutor {
  readonly startTime: string;
  /**
   * Settles when the executor has exited and all its output has been written to `output`. Rejects when the
   * signal given to start/adopt aborts first (the runtime stops following; removeAll is what kills).
   */
  readonly exited: Promise<ExecutorExit>;
}

/** An executor a previous tesp process started, found by its labels. */
export interface LeftoverExecutor {
  index: number;
  running: boolean;
  /** False for a container that was created but never started (the previous process died in between). */
  started: boolean;
}

export interface ExecutorRuntime {
  readonly kind: 'docker' | 'process';
  /** Whether executors outlive tesp and can be adopted by the next process. */
  readonly survivesRestart: boolean;
  /** Starts an executor; `signal` stops following it (cancel and detach), without killing it. */
  start(plan: ExecutionPlan, executor: PlanExecutor, output: ExecutorOutput, signal: AbortSignal): Promise<RunningExecutor>;
  /** Executors of a task left by an earlier process, by executor index. */
  leftovers(taskId: string): Promise<LeftoverExecutor[]>;
  /** Follows a leftover executor, replaying its output from the start. */
  adopt(taskId: string, index: number, output: ExecutorOutput, signal: AbortSignal): Promise<RunningExecutor>;
  /** Stops (SIGTERM, then SIGKILL after the stop timeout) and removes every executor of a task; resolves when they are gone. */
  removeAll(taskId: string): Promise<void>;
}

export function executorName(taskId: string, index: number): string {
  return `tesp-${taskId}-${index}`;
}

/** The rejection of `exited` when following stopped because the run was canceled or detached. */
export function abortedError(): Error {
  const err = new Error('the run was stopped');
  err.name = 'AbortError';
  return err;
}

import type { TaskRecord, TesOutputFileLog } from '../tasks/tes-task';

// The compute port. A backend runs a claimed task (staging, executors, outputs) and reports what happens as
// TaskUpdates; TaskLifecycleService is the only writer of task state from those updates.
// Implementations: local/ (Docker or plain processes). pulsar-rest/ and pulsar-amqp/ join later.

export const COMPUTE_BACKEND = Symbol('COMPUTE_BACKEND');

export type TaskUpdate =
  | { kind: 'running' }
  | { kind: 'executor-started'; index: number; startTime: string }
  | { kind: 'executor-output'; index: number; stdout: string; stderr: string }
  | { kind: 'executor-finished'; index: number; endTime: string; exitCode: number; stdout: string; stderr: string }
  | { kind: 'output-uploaded'; outputs: TesOutputFileLog[] }
  | { kind: 'metadata'; values: Record<string, string> }
  | { kind: 'system-log'; message: string }
  /** The last update of a run. `reason` goes to system_logs (required for SYSTEM_ERROR). */
  | { kind: 'finished'; state: 'COMPLETE' | 'EXECUTOR_ERROR' | 'SYSTEM_ERROR'; reason?: string };

export type UpdateListener = (taskId: string, update: TaskUpdate) => void;

export type ResumeOutcome =
  /** The backend found the task's work and carries on; updates follow as for submit. */
  | { kind: 'resumed'; detail: string }
  /** Nothing of the task's work is left; it cannot finish. */
  | { kind: 'lost'; reason: string };

export interface ComputeBackend {
  readonly name: string;
  /** backend_parameters keys this backend understands (lower case), listed in service-info. */
  readonly supportedBackendParameters: readonly string[];

  /** Subscribes the single reconciler. Called once at start-up, before any submit or resume. */
  onUpdate(listener: UpdateListener): void;

  /** Starts running a task that is INITIALIZING. Idempotent per task id; resolves once the run has started. */
  submit(task: TaskRecord): Promise<void>;

  /** Stops the task's work and frees its resources. Idempotent; resolves when containers are gone. */
  cancel(taskId: string): Promise<void>;

  /** At start-up, for a task a previous process left INITIALIZING or RUNNING. */
  resume(task: TaskRecord): Promise<ResumeOutcome>;

  /** Tasks currently running in this process. */
  activeCount(): number;

  /** Whether this process is running the task now. */
  isRunning(taskId: string): boolean;

  /** Stops following running work without killing it (graceful shutdown; resume picks it up again). */
  detach(): Promise<void>;
}

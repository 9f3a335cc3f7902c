import type { TaskUpdate } from '../domain/task-update';
import type { BackendRef, StoredTask } from '../domain/tes-task';
import type { BackendParameter } from '../engine/backend-parameters';

// The compute port. A backend runs the tasks a replica holds and reports what happens as TaskUpdates; the
// scheduler is the only writer of task state from those updates. Implementations: local/ (Docker or plain
// processes, through the engine) and pulsar/ (Pulsar runners over REST: real Pulsar or `tesp runner`).

export const COMPUTE_BACKEND = Symbol('COMPUTE_BACKEND');

/**
 * `seq` numbers a run's updates within the task's current attempt, counting on from the task's
 * control.update_seq when the run started, so the store can drop a redelivered or older update. Resolves once the
 * store has answered: true when the update was written (or was already there), false when it could not be written
 * now (the scheduler keeps a run's end and writes it later). A backend that removes the work's traces after the end
 * waits for this, so a crash in between never leaves a task whose work is gone and whose end is unwritten.
 */
export type UpdateListener = (taskId: string, update: TaskUpdate, seq: number) => Promise<boolean>;

export type ResumeOutcome =
  /** The backend found the task's work and follows it again; updates follow as for submit. */
  | { kind: 'resumed'; detail: string }
  /** Nothing of the work can be followed from here; what of it could be reached is stopped. */
  | { kind: 'lost'; reason: string };

/**
 * What submit throws when the backend cannot take the task now but will later (the runner it must run on does not
 * answer). The scheduler puts the task back in the queue with `message` in its system_logs and claims it again
 * once `available(waitKey)` says so.
 */
export class BackendUnavailable extends Error {
  constructor(
    readonly waitKey: string,
    message: string,
  ) {
    super(message);
    this.name = 'BackendUnavailable';
  }
}

export interface ComputeBackend {
  readonly name: string;
  /** The backend_parameters keys this backend understands, with their validation (listed in service-info). */
  readonly backendParameters: readonly BackendParameter[];
  /** How many tasks one replica runs at once on this backend, and the setting that says so. */
  readonly capacity: { readonly tasks: number; readonly setting: string };

  /** Whether what a BackendUnavailable named by `waitKey` waited for is there now; absent: always. */
  available?(waitKey: string): boolean;

  /** What service-info shows of this backend beyond its parameters (e.g. its runners and whether they answer). */
  describe?(): Record<string, unknown>;

  /** Subscribes the scheduler. Called once at start-up, before any submit or resume. */
  onUpdate(listener: UpdateListener): void;

  /**
   * Starts the work of a task this replica has just claimed or opened a new attempt of (INITIALIZING).
   * Idempotent per task id. Resolves once the work has started, to the reference that finds it again.
   */
  submit(task: StoredTask): Promise<BackendRef>;

  /** For a task this replica took over from another holder (or an earlier process of its own). */
  resume(task: StoredTask): Promise<ResumeOutcome>;

  /**
   * Stops the task's work wherever its reference says it is, also when no run here follows it. Resolves when the
   * work is gone, after the run's last reports (the killed executor's exit); to a line for system_logs.
   */
  cancel(task: StoredTask): Promise<string>;

  /** Stops following one task's work and leaves it running: another replica holds the task now. */
  release(taskId: string): Promise<void>;

  /** Stops following all work (graceful shutdown); what survives is picked up by the next holder. */
  detach(): Promise<void>;
}

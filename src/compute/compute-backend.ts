import type { Readable } from 'node:stream';
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

/**
 * Reports about tasks that another replica may hold: a runner's status pushed through a broker (any replica may
 * consume it), a file a runner posts to a staging URL (any replica may receive it). The scheduler applies them with
 * the attempt and state guards only (patchForReport): idempotent, and never moving a task backwards.
 */
export interface TaskReports {
  /** The task as stored, to match a report against its backend reference. */
  get(taskId: string): Promise<StoredTask | undefined>;
  /**
   * Applies the updates in order to the attempt. Resolves to true when the store has taken them (or refused them
   * for good: the task moved on), false when it could not take them now (report again later).
   */
  apply(taskId: string, attempt: number, updates: readonly TaskUpdate[]): Promise<boolean>;
}

/**
 * tesp's staging URLs for runners that fetch inputs and post outputs themselves (Pulsar over AMQP), served by the
 * API on every replica. Refusals are DomainErrors: FORBIDDEN for a wrong key or an attempt that is over.
 */
export interface StagingRelay {
  openInput(taskId: string, attempt: number, key: string, index: number, relative: string): Promise<{ body: Readable; size?: number }>;
  /** `clientPath` is the upload's `path` parameter; `body` the multipart part named `file`. */
  receiveFile(taskId: string, attempt: number, key: string, clientPath: string, body: Readable): Promise<{ stored: string }>;
}

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

  /** Present when the backend's runners fetch and post files through tesp (see StagingRelay). */
  readonly stagingRelay?: StagingRelay;

  /** For backends that take reports any replica may receive; called once at start-up on every replica. */
  acceptReports?(reports: TaskReports): void;

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

import type { Logger } from '../common/logger';
import { errorMessage, redactText } from '../common/redact';
import { BackendUnavailable, ComputeBackend } from '../compute/compute-backend';
import { isStoreFault } from '../domain/domain-error';
import type { TaskPatch } from '../domain/task-patch';
import { HELD_STATES } from '../domain/task-state-machine';
import { StoredTask, TesState } from '../domain/tes-task';
import type { TaskRepository } from '../persistence/task-repository';
import type { HeldRun, HeldRuns } from './held-runs';
import type { UpdateApplier } from './update-applier';

export interface LeaseSettings {
  /** This replica's name in leases. */
  holder: string;
  leaseMs: number;
}

/** Claims sent to the store at once. */
const CLAIMS_PER_ROUND = 32;

/** How many QUEUED tasks a saturated replica looks at to tell them why they wait. */
const WAITING_NOTE_WINDOW = 64;

/** Tasks put back in the queue that this replica leaves alone until what they wait for is there. */
const MAX_PUT_BACK = 5000;

/**
 * Starts QUEUED tasks while this replica has capacity: the backend's capacity against the store's count of the
 * tasks this holder has under lease. Each claim is one atomic store operation (claimNext), so replicas never start
 * the same task twice. Woken when a task is created and when a run ends, so freed capacity is used at once.
 */
export class Dispatcher {
  private running?: Promise<void>;
  private scheduled?: NodeJS.Immediate;
  private again = false;
  private stopped = false;
  private lastWaitingNote = 0;
  /** Tasks put back in the queue because the backend could not take them, by what they wait for. */
  private readonly putBack = new Map<string, Set<string>>();

  constructor(
    private readonly repo: TaskRepository,
    private readonly backend: ComputeBackend,
    private readonly runs: HeldRuns,
    private readonly applier: UpdateApplier,
    private readonly lease: LeaseSettings,
    private readonly waitingNoteEveryMs: number,
    private readonly logger: Logger,
  ) {}

  /**
   * Looks for work right after this event-loop turn: the creates of one burst share one round (a round reads the
   * store before it claims). Calls while a round runs fold into one more round.
   */
  wake(): void {
    if (this.stopped || this.scheduled) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.scheduled = setImmediate(() => {
      this.scheduled = undefined;
      this.round();
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    await this.running;
  }

  private round(): void {
    this.running = this.dispatch()
      .catch((err: unknown) => this.logger[isStoreFault(err) ? 'debug' : 'error']({ err: errorMessage(err) }, 'dispatch failed'))
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.wake();
        }
      });
  }

  private async dispatch(): Promise<void> {
    const capacity = this.backend.capacity.tasks;
    const free = capacity - (await this.repo.countHeld(this.lease.holder));
    if (free <= 0) {
      await this.noteWaiting(capacity);
      return;
    }
    // Claims issued together share one store commit; a large capacity fills in rounds.
    const batch = Math.min(free, CLAIMS_PER_ROUND);
    const skip = this.waitingIds();
    const claims = await Promise.all(Array.from({ length: batch }, () => this.repo.claimNext(this.lease.holder, this.lease.leaseMs, { skip })));
    for (const task of claims) if (task) this.start(task);
    if (free > batch && claims.every(Boolean)) this.again = true;
  }

  /** Registers the run before anything else can happen, then hands the task to the backend. */
  private start(task: StoredTask): void {
    const run = this.runs.add(task.id, task.control.attempt, task.control.lease!.token);
    run.starting = this.submit(task, run).catch((err: unknown) => this.letGo(run, err));
  }

  /**
   * A start or take-over that could not record itself (the store refused a write: full, or gone). The run is let go
   * here, so nothing renews its lease under a run's name: the heartbeat releases the lease as one no run knows and
   * the task is taken over again (resumed, or run again) once the store takes writes. Never an unhandled rejection.
   */
  letGo(run: HeldRun, err: unknown): void {
    this.logger[isStoreFault(err) ? 'warn' : 'error']({ taskId: run.taskId, err: errorMessage(err) }, 'could not record the start of a run; the task is taken over again later');
    this.runs.delete(run);
  }

  /** Hands a task this replica holds to the backend and records its reference; a failure ends it SYSTEM_ERROR. */
  async submit(task: StoredTask, run: HeldRun): Promise<void> {
    try {
      const ref = await this.backend.submit(task);
      await this.applier.write(task.id, { from: HELD_STATES, attempt: run.attempt, lease_token: run.token, ops: [{ op: 'set_backend_ref', ref }] });
    } catch (err) {
      if (err instanceof BackendUnavailable) await this.putBackLater(task, run, err);
      else await this.end(run, `could not start: ${errorMessage(err)}`);
    }
  }

  /**
   * The backend cannot take the task now. A first attempt goes back to the queue (held by no one, the reason in
   * its system_logs) and is left there until the backend says what it waits for is available. A later attempt
   * cannot (a claim starts attempt 1): it stays held and is submitted again once that is available.
   */
  private async putBackLater(task: StoredTask, run: HeldRun, why: BackendUnavailable): Promise<void> {
    const line = `waiting: ${redactText(why.message)}`;
    if (run.attempt === 1) {
      const result = await this.applier.write(task.id, { from: [TesState.INITIALIZING], to: TesState.QUEUED, attempt: 1, lease_token: run.token, ops: [{ op: 'add_system_log', line }] });
      // Refused as 'state': a cancel came first and ends the task.
      if (!result.applied && result.reason === 'state') return;
      this.runs.delete(run);
      if (result.applied && this.waitingIds().length < MAX_PUT_BACK) {
        const ids = this.putBack.get(why.waitKey) ?? new Set<string>();
        this.putBack.set(why.waitKey, ids.add(task.id));
      }
      return;
    }
    await this.applier.write(task.id, { from: HELD_STATES, attempt: run.attempt, lease_token: run.token, ops: [{ op: 'add_system_log', line }] });
    const retry = () => {
      if (this.stopped || this.runs.get(task.id) !== run || run.canceling) return;
      if (!(this.backend.available?.(why.waitKey) ?? true)) {
        setTimeout(retry, this.waitingNoteEveryMs).unref();
        return;
      }
      run.starting = this.submit(task, run).catch((err: unknown) => this.letGo(run, err));
    };
    setTimeout(retry, this.waitingNoteEveryMs).unref();
  }

  /** The ids of put-back tasks still waiting; forgets those whose wait is over. */
  private waitingIds(): string[] {
    for (const key of [...this.putBack.keys()]) if (this.backend.available?.(key) ?? true) this.putBack.delete(key);
    return [...this.putBack.values()].flatMap((ids) => [...ids]);
  }

  /**
   * Ends a task this replica holds SYSTEM_ERROR with the reason. When the store cannot take the write now, the
   * heartbeat writes it again later: a held task never stays without a run.
   */
  async end(run: HeldRun, reason: string): Promise<void> {
    const write = async () => {
      const result = await this.applier.write(run.taskId, failPatch(run, reason));
      run.unwrittenEnd = undefined;
      // Refused as 'state': a cancel is being carried out, and it ends the task.
      if (result.applied || result.reason !== 'state') {
        this.runs.delete(run);
        this.wake();
      }
    };
    await write().catch((err: unknown) => {
      this.logger.error({ taskId: run.taskId, err: errorMessage(err) }, 'could not record the end of a task; trying again at the next heartbeat');
      run.unwrittenEnd = write;
    });
  }

  /** A saturated replica tells the oldest QUEUED tasks why they wait (once each, at most once per poll). */
  private async noteWaiting(capacity: number): Promise<void> {
    // A replica that runs no tasks (capacity 0) serves the API only: the others speak for the queue.
    if (capacity === 0 || Date.now() - this.lastWaitingNote < this.waitingNoteEveryMs) return;
    this.lastWaitingNote = Date.now();
    const line = `waiting: ${capacity} task(s) already running on this replica (${this.backend.capacity.setting})`;
    const queued = await this.repo.findByState([TesState.QUEUED], WAITING_NOTE_WINDOW);
    const unnoted = queued.filter((task) => !task.logs.some((log) => log.system_logs?.includes(line)));
    await Promise.all(unnoted.map((task) => this.repo.patch(task.id, { from: [TesState.QUEUED], attempt: 0, ops: [{ op: 'add_system_log', line }] })));
  }
}

/** The patch that ends a task this replica holds SYSTEM_ERROR with the reason. */
function failPatch(run: HeldRun, reason: string): TaskPatch {
  return {
    from: [TesState.INITIALIZING, TesState.RUNNING, TesState.PAUSED],
    to: TesState.SYSTEM_ERROR,
    attempt: run.attempt,
    lease_token: run.token,
    ops: [
      { op: 'set_times', end_time: new Date().toISOString() },
      { op: 'add_system_log', line: redactText(reason) },
    ],
  };
}

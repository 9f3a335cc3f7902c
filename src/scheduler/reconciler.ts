import type { Logger } from '../common/logger';
import { errorMessage } from '../common/redact';
import type { ComputeBackend, ResumeOutcome } from '../compute/compute-backend';
import { emptyLog } from '../domain/task-patch';
import { HELD_STATES } from '../domain/task-state-machine';
import { StoredTask, TesState } from '../domain/tes-task';
import type { TaskRepository } from '../persistence/task-repository';
import type { Cancellation } from './cancellation';
import type { Dispatcher, LeaseSettings } from './dispatcher';
import type { HeldRun, HeldRuns } from './held-runs';
import type { UpdateApplier } from './update-applier';

/** Expired leases looked at per round. */
const EXPIRED_PER_ROUND = 32;

/**
 * Settles tasks whose holder stopped renewing its lease (it died, or lost the store for longer than a lease):
 * takes each over by compare-and-set on its lease token, so exactly one replica does, then resumes its work when
 * the backend can adopt it, runs it again as a new attempt when it cannot (up to scheduler.max_attempts), or ends
 * it SYSTEM_ERROR. A task being canceled is stopped and ended CANCELED. Orphans are only ever found this way: by
 * an expired lease, never by what this process happens to run.
 */
export class Reconciler {
  constructor(
    private readonly repo: TaskRepository,
    private readonly backend: ComputeBackend,
    private readonly runs: HeldRuns,
    private readonly applier: UpdateApplier,
    private readonly dispatcher: Dispatcher,
    private readonly cancellation: Cancellation,
    private readonly lease: LeaseSettings,
    private readonly maxAttempts: number,
    private readonly logger: Logger,
  ) {}

  async reconcile(): Promise<void> {
    // A replica that runs no tasks serves the API only; replicas with a backend to work with settle the rest.
    if (this.backend.capacity.tasks === 0) return;
    const expired = await this.repo.findExpiredLeases(Date.now(), EXPIRED_PER_ROUND);
    if (expired.length === 0) return;
    // Taking a task over uses capacity like a claim does; a cancel does not need any.
    let free = this.backend.capacity.tasks - (await this.repo.countHeld(this.lease.holder));
    for (const task of expired) {
      if (this.runsHere(task)) continue;
      if (task.state !== TesState.CANCELING && free <= 0) continue;
      const taken = await this.repo.takeOver(task.id, task.control.lease?.token, this.lease.holder, this.lease.leaseMs);
      if (!taken) continue; // another replica was first, or the holder renewed after all
      if (taken.state !== TesState.CANCELING) free -= 1;
      const run = this.runs.add(taken.id, taken.control.attempt, taken.control.lease!.token);
      const from = task.control.lease ? `from ${task.control.lease.holder}` : 'without a holder';
      run.starting = this.settle(taken, run, `taken over by ${this.lease.holder} ${from} after its lease ended`).catch((err: unknown) => this.dispatcher.letGo(run, err));
    }
  }

  /**
   * A lease of this replica's own that lapsed while the store refused writes (a full disk, say): its run goes on
   * here and the next heartbeat renews it. Taking it over would end the run as if this process had restarted.
   * Nor is a task taken back right after the heartbeat let go of it.
   */
  private runsHere(task: StoredTask): boolean {
    const lease = task.control.lease;
    if (lease?.holder !== this.lease.holder) return false;
    // Just let go (its lease ended under this replica, or went elsewhere): other replicas get a lease's time to take
    // it over first; taking it straight back would restart work that may be running on.
    return this.runs.get(task.id)?.token === lease.token || this.runs.letGoWithin(task.id, this.lease.leaseMs);
  }

  private async settle(task: StoredTask, run: HeldRun, how: string): Promise<void> {
    this.logger.info({ taskId: task.id, state: task.state }, how);
    if (task.state === TesState.CANCELING) {
      void this.cancellation.stop(task.id);
      return;
    }
    let outcome: ResumeOutcome;
    try {
      outcome = await this.backend.resume(task);
    } catch (err) {
      outcome = { kind: 'lost', reason: `it could not be resumed: ${errorMessage(err)}` };
    }
    if (outcome.kind === 'resumed') {
      await this.applier.write(task.id, {
        from: HELD_STATES,
        attempt: run.attempt,
        lease_token: run.token,
        ops: [{ op: 'add_system_log', line: `${how}; resumed: ${outcome.detail}` }],
      });
      return;
    }
    await this.retryOrFail(task, run, `${how}; ${outcome.reason}`);
  }

  /** A run that cannot be adopted starts over as a new attempt while attempts are left; otherwise the task fails. */
  private async retryOrFail(task: StoredTask, run: HeldRun, why: string): Promise<void> {
    const attempt = run.attempt;
    if (attempt >= this.maxAttempts) {
      await this.dispatcher.end(run, `attempt ${attempt} was lost: ${why}; no attempt is left (scheduler.max_attempts = ${this.maxAttempts})`);
      return;
    }
    const now = new Date().toISOString();
    const result = await this.applier.write(task.id, {
      from: [TesState.INITIALIZING, TesState.RUNNING, TesState.PAUSED],
      to: TesState.INITIALIZING,
      attempt,
      lease_token: run.token,
      ops: [
        { op: 'add_system_log', line: `attempt ${attempt} was lost: ${why}` },
        { op: 'set_times', end_time: now },
      ],
      next_attempt: {
        log: { ...emptyLog(), start_time: now, system_logs: [`attempt ${attempt + 1} of at most ${this.maxAttempts}: the task runs again from the start`] },
      },
    });
    if (!result.applied) {
      // Canceled meanwhile (the heartbeat carries the cancel out) or no longer ours.
      if (result.reason !== 'state') this.runs.delete(run);
      return;
    }
    const next = this.runs.add(task.id, result.task.control.attempt, run.token);
    this.logger.info({ taskId: task.id, attempt: next.attempt }, 'task runs again as a new attempt');
    // A patch answers with the control fields only; the backend gets the whole task as it now is.
    next.starting = this.repo
      .getUnscoped(task.id)
      .then((current) => (current ? this.dispatcher.submit(current, next) : undefined))
      .catch((err: unknown) => this.dispatcher.letGo(next, err));
    await next.starting;
  }
}

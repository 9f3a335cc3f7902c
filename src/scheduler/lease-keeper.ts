import type { Logger } from '../common/logger';
import { errorMessage } from '../common/redact';
import type { ComputeBackend } from '../compute/compute-backend';
import { isStoreFault } from '../domain/domain-error';
import { TesState } from '../domain/tes-task';
import type { HeldTask, TaskRepository } from '../persistence/task-repository';
import type { Cancellation } from './cancellation';
import type { LeaseSettings } from './dispatcher';
import type { HeldRun, HeldRuns } from './held-runs';

/**
 * The holder's heartbeat. It renews this replica's leases (every third of a lease), and on every beat compares
 * what the store says this holder holds with the runs it has:
 * - a task held here that is CANCELING is stopped (a cancel request that reached another replica);
 * - a run whose task is no longer held here lost its lease (another replica took it over): it is let go without
 *   stopping its work, which is the new holder's now;
 * - a lease under this holder's name with a token no run here knows (an earlier process with the same holder id)
 *   is released, so the task is taken over properly instead of being renewed forever;
 * - a run's end that could not be written is written again (before anything else).
 */
export class LeaseKeeper {
  private lastRenewal = 0;
  /** Unknown tokens seen at the last beat: released when still unknown at the next (a claim may be in flight). */
  private strangers = new Set<string>();

  constructor(
    private readonly repo: TaskRepository,
    private readonly backend: ComputeBackend,
    private readonly runs: HeldRuns,
    private readonly cancellation: Cancellation,
    private readonly lease: LeaseSettings,
    private readonly logger: Logger,
  ) {}

  async beat(): Promise<void> {
    // Ends that could not be written go first: they are fenced by the run's lease token, so one written after the
    // lease lapsed (the store refused writes meanwhile, e.g. a full disk) still lands unless another holder took over.
    for (const run of this.runs.values()) {
      if (!run.unwrittenEnd) continue;
      await run.unwrittenEnd().catch((err: unknown) => this.logger[isStoreFault(err) ? 'debug' : 'error']({ taskId: run.taskId, err: errorMessage(err) }, 'could not record the end of a run'));
    }
    const judged = this.runs.now();
    const renew = Date.now() - this.lastRenewal >= this.lease.leaseMs / 3;
    let held: HeldTask[];
    try {
      if (renew) this.lastRenewal = Date.now();
      held = renew ? await this.repo.renewLeases(this.lease.holder, this.lease.leaseMs) : await this.repo.heldBy(this.lease.holder);
    } catch (err) {
      if (renew) this.lastRenewal = 0;
      this.logger[isStoreFault(err) ? 'debug' : 'error']({ err: errorMessage(err) }, renew ? 'could not renew leases' : 'could not read leases');
      return;
    }
    const byId = new Map(held.map((task) => [task.id, task]));
    const strangers = new Set<string>();
    for (const task of held) {
      const run = this.runs.get(task.id);
      if (!run || run.token !== task.token) {
        strangers.add(task.token);
        if (this.strangers.has(task.token)) await this.releaseStranger(task);
        continue;
      }
      if (task.state === TesState.CANCELING) void this.cancellation.stop(task.id);
    }
    this.strangers = strangers;
    for (const run of this.runs.values()) {
      if (run.since > judged) continue;
      const task = byId.get(run.taskId);
      if (!task || task.token !== run.token) await this.lost(run);
    }
  }

  /** Ends this replica's leases at once (graceful shutdown), so other replicas take the tasks over without waiting. */
  async releaseAll(): Promise<void> {
    await Promise.all(this.runs.values().map((run) => this.repo.releaseLease(run.taskId, run.token).catch(() => false)));
  }

  private async lost(run: HeldRun): Promise<void> {
    this.logger.warn({ taskId: run.taskId }, 'this replica no longer holds the task (another replica took it over, or recorded its end from a report): let go of it here');
    this.runs.delete(run);
    this.runs.markLetGo(run.taskId);
    await this.backend.release(run.taskId).catch(() => undefined);
  }

  private async releaseStranger(task: HeldTask): Promise<void> {
    this.logger.warn({ taskId: task.id }, 'released a lease under this holder id that no run here knows (an earlier process with the same scheduler.holder_id?)');
    await this.repo.releaseLease(task.id, task.token).catch(() => false);
  }
}

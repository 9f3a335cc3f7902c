import type { Logger } from '../common/logger';
import { errorMessage } from '../common/redact';
import type { ComputeBackend } from '../compute/compute-backend';
import { DomainError, ErrorCode } from '../domain/domain-error';
import type { TaskScope } from '../domain/principal';
import type { PatchOp, TaskPatch } from '../domain/task-patch';
import { isTerminal } from '../domain/task-state-machine';
import { logIndexOf, TesState } from '../domain/tes-task';
import type { TaskRepository } from '../persistence/task-repository';
import type { HeldRun, HeldRuns } from './held-runs';
import type { UpdateApplier } from './update-applier';

/**
 * The exit code recorded for an executor that was killed by a cancel when no exit could be observed (its run was
 * not followed here): 128 + SIGKILL, as Docker reports a container killed after its stop timeout.
 */
export const KILLED_EXIT_CODE = 137;

/** How often a cancel request reads the task again when it changed state in between. */
const REQUEST_TRIES = 10;

/**
 * Cancel through the store. A request, on any replica, records the cancel (a QUEUED task ends CANCELED at once,
 * a started one becomes CANCELING) and returns. The replica holding the task sees CANCELING (at once when it is
 * this one, otherwise at its next heartbeat), stops the work, and ends the task CANCELED once the work is gone.
 */
export class Cancellation {
  constructor(
    private readonly repo: TaskRepository,
    private readonly backend: ComputeBackend,
    private readonly runs: HeldRuns,
    private readonly applier: UpdateApplier,
    private readonly onEnded: () => void,
    private readonly logger: Logger,
  ) {}

  /**
   * Records a cancel request: NOT_FOUND for an unknown task and for one outside the caller's scope (the same
   * answer, so ids do not leak); nothing for one that ended or is being canceled. The owner never changes, so the
   * scoped read is what keeps the patch inside the scope.
   */
  async request(id: string, scope: TaskScope): Promise<void> {
    for (let tries = 0; tries < REQUEST_TRIES; tries++) {
      const task = await this.repo.get(id, scope);
      if (!task) throw new DomainError(ErrorCode.NotFound, `task ${id} not found`);
      if (isTerminal(task.state) || task.state === TesState.CANCELING) return;
      const patch: TaskPatch =
        task.state === TesState.QUEUED
          ? {
              from: [TesState.QUEUED],
              to: TesState.CANCELED,
              attempt: task.control.attempt,
              ops: [
                { op: 'add_system_log', line: 'canceled by request before it started' },
                { op: 'set_times', end_time: new Date().toISOString() },
              ],
            }
          : {
              from: [TesState.INITIALIZING, TesState.RUNNING, TesState.PAUSED],
              to: TesState.CANCELING,
              attempt: task.control.attempt,
              ops: [{ op: 'add_system_log', line: 'cancel requested: stopping its work' }],
            };
      const result = await this.repo.patch(id, patch);
      if (result.applied) {
        if (result.task.state === TesState.CANCELING) void this.stop(id);
        return;
      }
      // It was claimed, or it moved on, in between: look again.
    }
    throw new DomainError(ErrorCode.Unavailable, `task ${id} kept changing while the cancel was recorded; try again`, true);
  }

  /** Stops a CANCELING task this replica holds (once, however often asked) and ends it CANCELED. */
  stop(id: string): Promise<void> {
    const run = this.runs.get(id);
    if (!run) return Promise.resolve();
    run.canceling ??= this.finish(run).catch((err: unknown) => {
      this.logger.error({ taskId: id, err: errorMessage(err) }, 'could not finish a cancel');
      run.canceling = undefined; // the next heartbeat tries again
    });
    return run.canceling;
  }

  private async finish(run: HeldRun): Promise<void> {
    // A run still being started would be missed by the stop.
    await run.starting.catch(() => undefined);
    const task = await this.repo.getUnscoped(run.taskId);
    if (!task || task.state !== TesState.CANCELING || task.control.lease?.token !== run.token) return;
    let detail: string;
    try {
      detail = await this.backend.cancel(task);
    } catch (err) {
      detail = `stopping its work failed (${errorMessage(err)}); what was running may still run`;
    }
    // The run's last reports (the killed executor's exit) are written before the end.
    await this.applier.drain(run.taskId);
    const current = (await this.repo.getUnscoped(run.taskId)) ?? task;
    const now = new Date().toISOString();
    const executorLogs = current.logs[logIndexOf(run.attempt)]?.logs ?? [];
    const unfinished: PatchOp[] = executorLogs.flatMap((log, index) =>
      log?.start_time && !log.end_time ? [{ op: 'set_executor_log' as const, index, fields: { end_time: now, exit_code: KILLED_EXIT_CODE } }] : [],
    );
    const result = await this.applier.write(run.taskId, {
      from: [TesState.CANCELING],
      to: TesState.CANCELED,
      attempt: run.attempt,
      lease_token: run.token,
      ops: [...unfinished, { op: 'set_times', end_time: now }, { op: 'add_system_log', line: `canceled: ${detail}` }],
    });
    if (result.applied) this.logger.info({ taskId: run.taskId }, 'task canceled');
    this.runs.delete(run);
    this.onEnded();
  }
}

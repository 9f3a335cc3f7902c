import type { Logger } from '../common/logger';
import { errorMessage, redactText } from '../common/redact';
import { DomainError, ErrorCode, isStoreFault } from '../domain/domain-error';
import { patchForReport, patchForUpdate, PatchResult, TaskPatch } from '../domain/task-patch';
import type { TaskUpdate } from '../domain/task-update';
import type { TaskRepository } from '../persistence/task-repository';
import type { HeldRun, HeldRuns } from './held-runs';

/** How often a write the store refused as busy is tried, and how long to wait between tries. */
const WRITE_TRIES = 5;
const RETRY_BASE_MS = 100;

/**
 * Writes what runs report, one task at a time in order (different tasks in parallel): each update becomes a patch
 * (patchForUpdate) carrying the run's attempt, sequence number and lease token, so the store drops duplicates,
 * stale updates and writes of a run that no longer holds its task. The scheduler's own patches for a task go
 * through the same queue, behind the updates already in it.
 */
export class UpdateApplier {
  private readonly chains = new Map<string, Promise<unknown>>();

  constructor(
    private readonly repo: TaskRepository,
    private readonly runs: HeldRuns,
    private readonly logger: Logger,
    /** Called when a run's end has been recorded: its capacity is free again. */
    private readonly onRunEnded: () => void,
  ) {}

  /**
   * A run's update, numbered `seq` in its attempt. Updates of a task this replica does not hold are dropped.
   * Resolves to whether the store took it (applied, or refused as already applied or no longer this run's).
   */
  enqueue(taskId: string, update: TaskUpdate, seq: number): Promise<boolean> {
    const run = this.runs.get(taskId);
    if (!run) {
      this.logger.debug({ taskId, update: update.kind }, 'dropped an update of a task this replica does not hold');
      return Promise.resolve(true);
    }
    return this.chain(taskId, () => this.apply(run, update, seq)).catch(() => false);
  }

  /**
   * Reports about a task that any replica may receive (TaskReports.apply): each update becomes a report patch,
   * guarded by the attempt and the state only, written in order behind what is queued for the task here. When one
   * ends a run this replica holds, the run is over here too.
   */
  report(taskId: string, attempt: number, updates: readonly TaskUpdate[]): Promise<boolean> {
    return this.chain(taskId, async () => {
      const now = new Date().toISOString();
      for (const update of updates) {
        const result = await this.store(taskId, patchForReport(redacted(update), attempt, now));
        const run = this.runs.get(taskId);
        if (update.kind === 'finished' && result.applied && run?.attempt === attempt) this.ended(run, update, result);
        else if (update.kind === 'finished' && result.applied) this.logger.info({ taskId, state: result.task.state, reason: update.reason && redactText(update.reason) }, 'task finished');
      }
      return true;
    }).catch((err: unknown) => {
      this.logger.error({ taskId, err: errorMessage(err) }, 'could not record a report');
      return false;
    });
  }

  /** Writes a scheduler patch after the updates already queued for the task. */
  write(taskId: string, patch: TaskPatch): Promise<PatchResult> {
    return this.chain(taskId, () => this.store(taskId, patch));
  }

  /** Resolves when every update queued so far for the task has been written (or given up). */
  async drain(taskId: string): Promise<void> {
    await this.chains.get(taskId)?.catch(() => undefined);
  }

  async drainAll(): Promise<void> {
    await Promise.all([...this.chains.keys()].map((id) => this.drain(id)));
  }

  private chain<T>(taskId: string, work: () => Promise<T>): Promise<T> {
    const previous = this.chains.get(taskId) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(work);
    this.chains.set(taskId, next);
    void next.catch(() => undefined).then(() => {
      if (this.chains.get(taskId) === next) this.chains.delete(taskId);
    });
    return next;
  }

  private async apply(run: HeldRun, update: TaskUpdate, seq: number): Promise<boolean> {
    const patch = patchForUpdate(redacted(update), { attempt: run.attempt, seq, leaseToken: run.token }, new Date().toISOString());
    let result: PatchResult;
    try {
      result = await this.store(run.taskId, patch);
    } catch (err) {
      // A full or broken store says so once itself; each refused update is a detail.
      this.logger[isStoreFault(err) ? 'debug' : 'error']({ taskId: run.taskId, update: update.kind, err: errorMessage(err) }, 'could not record a task update');
      // The end of a run must not be lost: the next heartbeat writes it again.
      if (update.kind === 'finished') run.unwrittenEnd = () => this.write(run.taskId, patch).then((r) => this.ended(run, update, r));
      return false;
    }
    if (update.kind === 'finished') this.ended(run, update, result);
    return true;
  }

  /** What a run's final patch came to. Refused as 'state', the task is being canceled: the cancel ends it. */
  private ended(run: HeldRun, update: Extract<TaskUpdate, { kind: 'finished' }>, result: PatchResult): void {
    run.unwrittenEnd = undefined;
    if (!result.applied && result.reason === 'state') return;
    this.runs.delete(run);
    if (result.applied) this.logger.info({ taskId: run.taskId, state: result.task.state, reason: update.reason && redactText(update.reason) }, 'task finished');
    else this.logger.warn({ taskId: run.taskId, refused: result.reason }, 'the end of a run was not recorded: the task is held elsewhere now');
    this.onRunEnded();
  }

  /** Applies a patch, trying again while the store is busy (another process holds its write lock). */
  private async store(taskId: string, patch: TaskPatch): Promise<PatchResult> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.repo.patch(taskId, patch);
      } catch (err) {
        const busy = err instanceof DomainError && err.code === ErrorCode.Unavailable && err.transient;
        if (!busy || attempt >= WRITE_TRIES) throw err;
        await new Promise((resolve) => setTimeout(resolve, RETRY_BASE_MS * 2 ** (attempt - 1)));
      }
    }
  }
}

/** Messages from a run go to system_logs; credentials in them never do. */
function redacted(update: TaskUpdate): TaskUpdate {
  if (update.kind === 'system-log') return { ...update, message: redactText(update.message) };
  if (update.kind === 'finished' && update.reason) return { ...update, reason: redactText(update.reason) };
  return update;
}

import { Inject, Injectable, OnApplicationBootstrap, BeforeApplicationShutdown } from '@nestjs/common';
import { SETTINGS } from '../config/settings.module';
import type { Settings } from '../config/settings.schema';
import { LOGGER, Logger } from '../common/logger';
import { DomainError, ErrorCode } from '../common/domain-error';
import { errorMessage, redactText } from '../common/redact';
import { COMPUTE_BACKEND, ComputeBackend, TaskUpdate } from '../compute/compute-backend';
import { TASK_REPOSITORY, TaskMutation, TaskRepository } from '../persistence/task-repository';
import { ACTIVE_STATES, isTerminal, statesLeadingTo } from './task-state-machine';
import { TaskRecord, TesState, TesTaskLog } from './tes-task';

const WAITING_PREFIX = 'waiting:';
/** Sweeps for orphaned tasks run on every Nth dispatcher poll. */
const SWEEP_EVERY_POLLS = 30;

/**
 * Owns every task state change after creation: the dispatcher claims QUEUED tasks up to the concurrency
 * limit, the reconciler applies the compute backend's updates (the only writer of run state), and start-up
 * reconciliation settles tasks a previous process left running.
 */
@Injectable()
export class TaskLifecycleService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private pollTimer?: NodeJS.Timeout;
  private wakeTimer?: NodeJS.Timeout;
  private dispatching?: Promise<void>;
  private dispatchAgain = false;
  private stopped = false;
  private claiming = 0;
  private polls = 0;
  /** Active tasks no run was found for at the last sweep; settled if still orphaned at the next one. */
  private suspects = new Set<string>();
  /** Per-task chains keep each task's updates in order while different tasks proceed in parallel. */
  private readonly updateChains = new Map<string, Promise<void>>();

  constructor(
    @Inject(TASK_REPOSITORY) private readonly repo: TaskRepository,
    @Inject(COMPUTE_BACKEND) private readonly backend: ComputeBackend,
    @Inject(SETTINGS) private readonly settings: Settings,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.backend.onUpdate((taskId, update) => this.enqueueUpdate(taskId, update));
    await this.reconcileLeftovers();
    this.pollTimer = setInterval(() => {
      this.dispatch();
      if (++this.polls % SWEEP_EVERY_POLLS === 0) void this.sweepOrphans();
    }, this.settings.scheduler.poll_interval_ms);
    this.pollTimer.unref();
    this.dispatch();
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearInterval(this.pollTimer);
    clearTimeout(this.wakeTimer);
    await this.dispatching;
    // Running containers keep running; the next start adopts them.
    await this.backend.detach();
    await Promise.all(this.updateChains.values());
  }

  /** Tells the dispatcher a task was stored QUEUED. */
  taskCreated(id: string): void {
    void id;
    if (this.stopped) return;
    clearTimeout(this.wakeTimer);
    this.wakeTimer = setTimeout(() => this.dispatch(), this.settings.scheduler.dispatch_delay_ms + 5);
    this.wakeTimer.unref();
  }

  /**
   * Cancels a task: NOT_FOUND if unknown; a no-op if it already ended; otherwise the task ends CANCELED at once
   * (clients treat CANCELING as unfinished) and its containers are removed in the background.
   */
  async cancel(id: string): Promise<void> {
    const task = await this.repo.get(id);
    if (!task) throw new DomainError(ErrorCode.NotFound, `task ${id} not found`);
    if (isTerminal(task.state)) return;
    const from = statesLeadingTo(TesState.CANCELED);
    const canceled = await this.repo.transition(id, from, TesState.CANCELED, (t) => {
      const log = currentLog(t);
      log.end_time ??= new Date().toISOString();
      log.system_logs.push('canceled by request');
    });
    if (!canceled) return; // it ended meanwhile
    if (task.state !== TesState.QUEUED) this.stopInBackground(id);
  }

  private stopInBackground(id: string): void {
    this.backend.cancel(id).catch((err: unknown) => {
      this.logger.error({ taskId: id, err: redactText(String(err)) }, 'failed to stop a canceled task');
    });
  }

  /** Tasks a previous process left INITIALIZING or RUNNING: adopted by the backend, or ended SYSTEM_ERROR. */
  private async reconcileLeftovers(): Promise<void> {
    const leftovers = await this.repo.findByState(ACTIVE_STATES, 100_000);
    for (const task of leftovers) await this.settle(task, 'after a restart of tesp');
  }

  /**
   * A task that is active in the store but has no run in this process (its last update was lost, or its run died
   * without reporting) would never end: seen orphaned at two sweeps in a row, it is settled like a leftover.
   */
  private async sweepOrphans(): Promise<void> {
    if (this.stopped) return;
    try {
      const active = await this.repo.findByState(ACTIVE_STATES, 100_000);
      const orphans = active.filter((task) => !this.backend.isRunning(task.id) && !this.updateChains.has(task.id));
      const confirmed = orphans.filter((task) => this.suspects.has(task.id));
      this.suspects = new Set(orphans.map((task) => task.id).filter((id) => !confirmed.some((task) => task.id === id)));
      for (const task of confirmed) {
        if (this.claiming === 0 && !this.backend.isRunning(task.id)) await this.settle(task, 'after its run stopped reporting');
      }
    } catch (err) {
      this.logger.error({ err: errorMessage(err) }, 'orphan sweep failed');
    }
  }

  private async settle(task: TaskRecord, when: string): Promise<void> {
    try {
      const outcome = await this.backend.resume(task);
      if (outcome.kind === 'resumed') {
        this.logger.info({ taskId: task.id, detail: outcome.detail }, `resumed task ${when}`);
        await this.repo.update(task.id, ACTIVE_STATES, (t) => currentLog(t).system_logs.push(`resumed ${when}: ${outcome.detail}`));
      } else {
        await this.fail(task.id, `lost ${when}: ${outcome.reason}`);
      }
    } catch (err) {
      await this.fail(task.id, `could not be resumed ${when}: ${errorMessage(err)}`);
    }
  }

  private dispatch(): void {
    if (this.stopped) return;
    if (this.dispatching) {
      this.dispatchAgain = true;
      return;
    }
    this.dispatching = this.dispatchOnce()
      .catch((err: unknown) => this.logger.error({ err: errorMessage(err) }, 'dispatch failed'))
      .finally(() => {
        this.dispatching = undefined;
        if (this.dispatchAgain) {
          this.dispatchAgain = false;
          this.dispatch();
        }
      });
  }

  private async dispatchOnce(): Promise<void> {
    const limit = this.settings.scheduler.max_concurrent_tasks;
    const delayMs = this.settings.scheduler.dispatch_delay_ms;
    let free = limit - this.backend.activeCount() - this.claiming;
    const queued = await this.repo.findByState([TesState.QUEUED], Math.max(free, 0) + 64);
    const now = Date.now();
    for (const task of queued) {
      const age = now - Date.parse(task.creation_time);
      if (age < delayMs) {
        // Too young: keep the cancel-before-start window, come back when it has passed.
        clearTimeout(this.wakeTimer);
        this.wakeTimer = setTimeout(() => this.dispatch(), delayMs - age + 5);
        this.wakeTimer.unref();
        continue;
      }
      if (free <= 0) {
        await this.noteWaiting(task, limit);
        continue;
      }
      free -= 1;
      await this.claim(task);
    }
  }

  private async noteWaiting(task: TaskRecord, limit: number): Promise<void> {
    if (task.logs.some((log) => log.system_logs.some((line) => line.startsWith(WAITING_PREFIX)))) return;
    await this.repo.update(task.id, [TesState.QUEUED], (t) => {
      currentLog(t).system_logs.push(`${WAITING_PREFIX} ${limit} tasks already running (scheduler.max_concurrent_tasks = ${limit})`);
    });
  }

  private async claim(queued: TaskRecord): Promise<void> {
    this.claiming += 1;
    try {
      const task = await this.repo.transition(queued.id, [TesState.QUEUED], TesState.INITIALIZING, (t) => {
        currentLog(t).start_time = new Date().toISOString();
      });
      if (!task) return; // canceled or claimed meanwhile
      try {
        await this.backend.submit(task);
      } catch (err) {
        await this.fail(task.id, `could not start: ${errorMessage(err)}`);
        return;
      }
      // A cancel that landed between the claim and the submit found nothing to stop yet.
      const after = await this.repo.get(task.id);
      if (after?.state === TesState.CANCELED) this.stopInBackground(task.id);
    } finally {
      this.claiming -= 1;
    }
  }

  private enqueueUpdate(taskId: string, update: TaskUpdate): void {
    const previous = this.updateChains.get(taskId) ?? Promise.resolve();
    const next = previous
      .then(() => this.applyUpdate(taskId, update))
      .catch((err: unknown) => this.logger.error({ taskId, update: update.kind, err: errorMessage(err) }, 'could not record a task update'));
    this.updateChains.set(taskId, next);
    void next.then(() => {
      if (this.updateChains.get(taskId) === next) this.updateChains.delete(taskId);
    });
  }

  private async applyUpdate(taskId: string, update: TaskUpdate): Promise<void> {
    const active = ACTIVE_STATES;
    switch (update.kind) {
      case 'running':
        await this.repo.transition(taskId, [TesState.INITIALIZING], TesState.RUNNING);
        return;
      case 'executor-started':
        await this.repo.update(taskId, active, (t) => {
          currentLog(t).logs[update.index] = { start_time: update.startTime };
        });
        return;
      case 'executor-output':
        await this.repo.update(taskId, active, (t) => {
          const log = (currentLog(t).logs[update.index] ??= {});
          log.stdout = update.stdout;
          log.stderr = update.stderr;
        });
        return;
      case 'executor-finished':
        await this.repo.update(taskId, active, (t) => {
          const log = (currentLog(t).logs[update.index] ??= {});
          Object.assign(log, { end_time: update.endTime, exit_code: update.exitCode, stdout: update.stdout, stderr: update.stderr });
        });
        return;
      case 'output-uploaded':
        await this.repo.update(taskId, active, (t) => currentLog(t).outputs.push(...update.outputs));
        return;
      case 'metadata':
        await this.repo.update(taskId, active, (t) => {
          const log = currentLog(t);
          log.metadata = { ...log.metadata, ...update.values };
        });
        return;
      case 'system-log':
        await this.repo.update(taskId, active, (t) => currentLog(t).system_logs.push(redactText(update.message)));
        return;
      case 'finished': {
        const to = TesState[update.state];
        const reason = update.reason ?? (to === TesState.SYSTEM_ERROR ? 'the compute backend reported a system error without a reason' : undefined);
        await this.finish(taskId, to, reason);
        return;
      }
    }
  }

  private fail(taskId: string, reason: string): Promise<void> {
    return this.finish(taskId, TesState.SYSTEM_ERROR, reason);
  }

  private async finish(taskId: string, to: TesState, reason?: string): Promise<void> {
    const from = statesLeadingTo(to).filter((s) => s !== TesState.QUEUED || to === TesState.SYSTEM_ERROR);
    const mutate: TaskMutation = (t) => {
      const log = currentLog(t);
      log.end_time = new Date().toISOString();
      if (reason) log.system_logs.push(redactText(reason));
    };
    const done = await this.repo.transition(taskId, from, to, mutate);
    if (done) this.logger.info({ taskId, state: to, reason }, 'task finished');
    // A slot is free: let the next queued task in.
    this.dispatch();
  }
}

/** The task's current attempt log (tesp makes one attempt), created on first use. */
export function currentLog(task: TaskRecord): TesTaskLog {
  if (task.logs.length === 0) task.logs.push({ logs: [], outputs: [], system_logs: [] });
  const log = task.logs[task.logs.length - 1];
  log.logs ??= [];
  log.outputs ??= [];
  log.system_logs ??= [];
  return log;
}


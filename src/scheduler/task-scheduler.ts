import * as os from 'node:os';
import type { Logger } from '../common/logger';
import { errorMessage } from '../common/redact';
import type { ComputeBackend } from '../compute/compute-backend';
import type { Settings } from '../config/settings.schema';
import { isStoreFault } from '../domain/domain-error';
import type { TaskScope } from '../domain/principal';
import type { TaskRepository } from '../persistence/task-repository';
import { Cancellation } from './cancellation';
import { Dispatcher, LeaseSettings } from './dispatcher';
import { HeldRuns } from './held-runs';
import { LeaseKeeper } from './lease-keeper';
import { Reconciler } from './reconciler';
import { UpdateApplier } from './update-applier';

/** This replica's name in leases: the setting, or <hostname>:<pid>. */
export function holderId(scheduler: Settings['scheduler']): string {
  return scheduler.holder_id || `${os.hostname()}:${process.pid}`;
}

/**
 * The scheduler of one replica: its dispatcher, update applier, lease keeper, reconciler and the cancel path,
 * driven by one tick (poll_interval_ms) besides being woken on create and when a run ends. Several replicas share
 * a store; the lease protocol keeps each task with exactly one of them.
 */
export class TaskScheduler {
  readonly holder: string;
  private readonly runs = new HeldRuns();
  private readonly applier: UpdateApplier;
  private readonly dispatcher: Dispatcher;
  private readonly cancellation: Cancellation;
  private readonly keeper: LeaseKeeper;
  private readonly reconciler: Reconciler;
  private timer?: NodeJS.Timeout;
  private ticking?: Promise<void>;
  private stopped = false;

  constructor(
    private readonly repo: TaskRepository,
    private readonly backend: ComputeBackend,
    private readonly settings: Settings['scheduler'],
    private readonly logger: Logger,
  ) {
    this.holder = holderId(settings);
    const lease: LeaseSettings = { holder: this.holder, leaseMs: settings.lease_ms };
    const wake = () => this.dispatcher.wake();
    this.applier = new UpdateApplier(repo, this.runs, logger, wake);
    this.dispatcher = new Dispatcher(repo, backend, this.runs, this.applier, lease, settings.poll_interval_ms, logger);
    this.cancellation = new Cancellation(repo, backend, this.runs, this.applier, wake, logger);
    this.keeper = new LeaseKeeper(repo, backend, this.runs, this.cancellation, lease, logger);
    this.reconciler = new Reconciler(repo, backend, this.runs, this.applier, this.dispatcher, this.cancellation, lease, settings.max_attempts, logger);
  }

  start(): void {
    this.backend.onUpdate((taskId, update, seq) => this.applier.enqueue(taskId, update, seq));
    this.backend.acceptReports?.({
      get: (taskId) => this.repo.getUnscoped(taskId),
      apply: (taskId, attempt, updates) => this.applier.report(taskId, attempt, updates),
    });
    this.logger.info({ holder: this.holder, leaseMs: this.settings.lease_ms }, 'scheduler started');
    // Ticks at least four times a lease, so a renewal (due every third of one) always lands before the lease ends.
    this.timer = setInterval(() => this.tick(), Math.min(this.settings.poll_interval_ms, Math.floor(this.settings.lease_ms / 4)));
    this.timer.unref();
    this.tick();
  }

  /** Graceful stop: no new work; runs are let go (the backend leaves what survives), leases released for others. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.ticking;
    await this.dispatcher.stop();
    // Starts and take-overs under way finish first, so detach sees every run.
    await Promise.all(this.runs.values().map((run) => run.starting.catch(() => undefined)));
    await this.backend.detach();
    await this.applier.drainAll();
    await this.keeper.releaseAll();
  }

  /** A task was stored QUEUED: look for capacity now rather than at the next tick. */
  taskCreated(): void {
    this.dispatcher.wake();
  }

  /** Records a cancel request of a task in the caller's scope (see Cancellation); the holder stops the work. */
  requestCancel(id: string, scope: TaskScope): Promise<void> {
    return this.cancellation.request(id, scope);
  }

  private tick(): void {
    if (this.stopped || this.ticking) return;
    this.ticking = (async () => {
      await this.keeper.beat();
      await this.reconciler.reconcile();
      this.dispatcher.wake();
    })()
      .catch((err: unknown) => this.logger[isStoreFault(err) ? 'debug' : 'error']({ err: errorMessage(err) }, 'scheduler tick failed'))
      .finally(() => (this.ticking = undefined));
  }
}

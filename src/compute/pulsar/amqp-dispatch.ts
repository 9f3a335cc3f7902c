import type { Logger } from '../../common/logger';
import { errorMessage } from '../../common/redact';
import type { BackendRef, StoredTask } from '../../domain/tes-task';
import { buildExecutionPlan, ExecutionPlan } from '../../engine/execution-plan';
import { jobContainerName, stagingRequestOf } from '../../engine/job-layout';
import { renderScript } from '../../engine/job-script';
import { BackendUnavailable, ResumeOutcome, TaskReports } from '../compute-backend';
import { AmqpReports, parseStatusUpdate } from './amqp-reports';
import { RelayInputFile, relayBase, relayKey, setupMessage } from './amqp-setup-message';
import type { AmqpRunner } from './runner-pool';

// The holder's side of a job over AMQP. Submit publishes the setup message and returns; from then on nothing is
// polled: the runner pushes status updates, which any replica consumes (AmqpReports) and settles the task from.
// The holder only keeps count of its jobs, asks for their status when that may have been missed (after a take-over,
// after the broker came back, and every amqp_status_interval_ms as a safety net), and cancels through a kill message.

export interface AmqpDispatchSettings {
  /** The base URL runners reach tesp's staging URLs at. */
  stagingUrl: string;
  stagingSecret: string;
  statusIntervalMs: number;
  /** How long a publish waits for the broker before the task waits in the queue again. */
  publishTimeoutMs: number;
}

interface AmqpRun {
  runner: AmqpRunner;
  jobId: string;
}

/** The job id suffix of the job that removes a cancelled job's containers on a real Pulsar. */
const CLEANUP_SUFFIX = '-rm';

/** How long a cancel keeps trying to reach a broker that is away. */
const CANCEL_REACH_MS = 60_000;

export class AmqpDispatch {
  private readonly runs = new Map<string, AmqpRun>();
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly runners: readonly AmqpRunner[],
    readonly reports: AmqpReports,
    private readonly settings: AmqpDispatchSettings,
    private readonly reference: (runner: AmqpRunner, jobId: string) => BackendRef,
    private readonly logger: Logger,
  ) {
    for (const link of new Set(runners.map((runner) => runner.amqp.link))) {
      // Updates published while the broker was away are in the queue, but a status asked for may not be.
      link.onConnect(() => this.requestStatuses((run) => run.runner.amqp.link === link));
    }
  }

  /** Consumes every AMQP runner's status updates (on every replica: the status queues are shared). */
  accept(reports: TaskReports): void {
    this.reports.accept(reports);
    for (const runner of this.runners) {
      runner.amqp.link.consume(runner.amqp.queues.statusUpdate, async (message) => {
        const parsed = parseStatusUpdate(message);
        if ('problem' in parsed) {
          this.logger.warn({ runner: runner.entry.name, queue: runner.amqp.queues.statusUpdate, problem: parsed.problem }, 'dropped a malformed status update');
          return;
        }
        const { update } = parsed;
        if (update.jobId.endsWith(CLEANUP_SUFFIX)) {
          // The job that removed a cancelled job's containers: once over, its directory can go too.
          if (['complete', 'failed', 'cancelled'].includes(update.status)) await runner.amqp.clean(update.jobId);
          return;
        }
        const outcome = await this.reports.statusUpdate(runner.entry.name, update);
        if (outcome.result === 'requeue') return 'requeue';
        // Acknowledged to the runner only once stored, so it republishes what was lost.
        if (update.acknowledge) await runner.amqp.acknowledge(update.acknowledge.queue, update.acknowledge.uuid);
        if (outcome.settled) await this.settled(runner, outcome.settled.taskId, outcome.settled.jobId);
      });
    }
    this.timer ??= setInterval(() => this.requestStatuses(() => true), this.settings.statusIntervalMs);
    this.timer.unref();
  }

  get followed(): number {
    return this.runs.size;
  }

  async submit(task: StoredTask, runner: AmqpRunner): Promise<BackendRef> {
    const attempt = task.control.attempt;
    const jobId = `${task.id}-${attempt}`;
    const plan = buildExecutionPlan(task);
    const relay = relayBase(this.settings.stagingUrl, task.id, attempt, relayKey(this.settings.stagingSecret, task.id, attempt));
    const message = setupMessage(plan, {
      jobId,
      script: renderScript(plan, { jobId, runtime: runner.entry.runtime }),
      relay,
      inputFiles: await this.inputFiles(task, plan),
      stagingRequest: runner.entry.staging === 'direct' ? stagingRequestOf(plan) : undefined,
    });
    try {
      await runner.amqp.setup(message);
    } catch (err) {
      throw new BackendUnavailable(runner.entry.name, `runner ${runner.entry.name}: ${errorMessage(err)}; the task starts when the broker is back`);
    }
    this.follow(task.id, runner, jobId);
    this.logger.info({ taskId: task.id, runner: runner.entry.name, job_id: jobId, queue: runner.amqp.queues.setup }, 'job sent to the runner\'s queue');
    return this.reference(runner, jobId);
  }

  async resume(task: StoredTask, runner: AmqpRunner, jobId: string): Promise<ResumeOutcome> {
    this.follow(task.id, runner, jobId);
    // Its status comes back as an update; when the broker is away now, the reconnect asks again.
    await runner.amqp.requestStatus(jobId, 2000).catch(() => undefined);
    return { kind: 'resumed', detail: `following job ${jobId} on runner ${runner.entry.name} through its status queue` };
  }

  async cancel(task: StoredTask, runner: AmqpRunner, jobId: string): Promise<string> {
    this.unfollow(task.id);
    const where = `job ${jobId} on runner ${runner.entry.name}`;
    try {
      await runner.amqp.kill(jobId, CANCEL_REACH_MS);
    } catch (err) {
      return `${where} could not be told to stop (${errorMessage(err)}); it may still run`;
    }
    let containers = '';
    if (runner.entry.runtime === 'docker' && task.executors.length > 0) {
      // A real Pulsar kills the job script but not the containers it started (a tesp runner removes them itself).
      const names = task.executors.map((_, index) => jobContainerName(jobId, index));
      const cleanupId = `${jobId}${CLEANUP_SUFFIX}`;
      await runner.amqp
        .setup({ job_id: cleanupId, command_line: `docker rm -f ${names.join(' ')} >/dev/null 2>&1; true`, setup_params: { job_id: cleanupId, tool_id: 'tes-task-cleanup', tool_version: '1.1' }, env: [] })
        .then(() => (containers = `, a job removing its containers was sent (${cleanupId})`), (err: unknown) => (containers = `; removing its containers could not be asked for: ${errorMessage(err)}`));
    }
    await runner.amqp.clean(jobId).catch(() => undefined);
    return `a kill message for ${where} was sent to ${runner.amqp.queues.kill}${containers}`;
  }

  release(taskId: string): void {
    this.unfollow(taskId);
  }

  detach(): void {
    clearInterval(this.timer);
    for (const taskId of [...this.runs.keys()]) this.unfollow(taskId);
  }

  /** A run's end is stored (by this replica): stop counting it and have a tesp runner remove its directory. */
  private async settled(runner: AmqpRunner, taskId: string, jobId: string): Promise<void> {
    if (this.runs.get(taskId)?.jobId === jobId) this.unfollow(taskId);
    await runner.amqp.clean(jobId).catch((err: unknown) => this.logger.warn({ taskId, job_id: jobId, err: errorMessage(err) }, 'could not ask the runner to clean a job'));
  }

  private follow(taskId: string, runner: AmqpRunner, jobId: string): void {
    if (this.runs.has(taskId)) return;
    this.runs.set(taskId, { runner, jobId });
    runner.active += 1;
  }

  private unfollow(taskId: string): void {
    const run = this.runs.get(taskId);
    if (!run) return;
    this.runs.delete(taskId);
    run.runner.active -= 1;
  }

  private requestStatuses(which: (run: AmqpRun) => boolean): void {
    for (const run of this.runs.values()) {
      if (which(run)) void run.runner.amqp.requestStatus(run.jobId, this.settings.publishTimeoutMs).catch(() => undefined);
    }
  }

  /** Every file of the task's URL inputs, directories listed, for the runner to fetch from tesp's staging URLs. */
  private async inputFiles(task: StoredTask, plan: ExecutionPlan): Promise<RelayInputFile[]> {
    const files: RelayInputFile[] = [];
    for (const input of plan.inputs) {
      if (input.url === undefined || input.content !== undefined) continue;
      if (input.type === 'FILE') {
        files.push({ index: input.index, relative: '', path: input.path });
        continue;
      }
      const listed = await this.reports.listing(`${task.id}/${task.control.attempt}/${input.index}`, input.url);
      for (const entry of listed) files.push({ index: input.index, relative: entry.relativePath, path: `${input.path.replace(/\/+$/, '')}/${entry.relativePath}` });
    }
    return files;
  }
}

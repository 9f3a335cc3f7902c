import type { Logger } from '../../common/logger';
import { errorMessage } from '../../common/redact';
import type { TaskUpdate } from '../../domain/task-update';
import { BackendRef, StoredTask, TesState } from '../../domain/tes-task';
import { SHM_SIZE_GB } from '../../engine/backend-parameters';
import { buildExecutionPlan } from '../../engine/execution-plan';
import { isSafeJobId, jobContainerName } from '../../engine/job-layout';
import type { StorageRegistry } from '../../storage/storage-registry';
import { BackendUnavailable, ComputeBackend, ResumeOutcome, StagingRelay, TaskReports, UpdateListener } from '../compute-backend';
import { FollowedRuns } from '../followed-runs';
import { AmqpDispatch, AmqpDispatchSettings } from './amqp-dispatch';
import { AmqpReports } from './amqp-reports';
import { JobEnd, PulsarJob, PulsarJobSettings } from './pulsar-job';
import { PulsarRequestError } from './pulsar-rest-client';
import { ANY_RUNNER, RestRunner, Runner, RunnerPool } from './runner-pool';

export interface PulsarBackendSettings extends PulsarJobSettings {
  maxConcurrentTasks: number;
  amqp: AmqpDispatchSettings;
}

interface Run {
  job: PulsarJob;
  runner: RestRunner;
  detach: AbortController;
  cancel: AbortController;
  done: Promise<JobEnd | undefined>;
}

/** How long a cancel waits for the runner to confirm that the job stopped. */
const CANCEL_CONFIRM_MS = 30_000;
/** How long a cancel keeps trying to reach a runner that does not answer. */
const CANCEL_REACH_MS = 60_000;

/**
 * Runs each task as a job on one of several Pulsar runners (a real Pulsar or `tesp runner`), over Pulsar's REST API
 * (PulsarJob: this replica follows the job by polling) or its message queues (AmqpDispatch: the runner pushes
 * status updates that any replica settles). The backend reference names the runner and the job id it uses, so any
 * replica can follow, cancel or clean the job after a take-over.
 */
export class PulsarComputeBackend implements ComputeBackend {
  readonly name = 'pulsar';
  readonly backendParameters;
  readonly capacity: ComputeBackend['capacity'];
  readonly stagingRelay?: StagingRelay;
  private listener?: UpdateListener;
  private readonly runs = new FollowedRuns<Run>();
  private readonly amqp?: AmqpDispatch;

  constructor(
    private readonly pool: RunnerPool,
    private readonly storage: StorageRegistry,
    private readonly settings: PulsarBackendSettings,
    private readonly logger: Logger,
  ) {
    this.backendParameters = [pool.parameter, SHM_SIZE_GB];
    this.capacity = { tasks: settings.maxConcurrentTasks, setting: `compute.pulsar.max_concurrent_tasks = ${settings.maxConcurrentTasks}` };
    if (pool.amqpRunners.length > 0) {
      const reports = new AmqpReports(storage, { stagingSecret: settings.amqp.stagingSecret, logTailBytes: settings.logTailBytes }, logger);
      this.amqp = new AmqpDispatch(pool.amqpRunners, reports, settings.amqp, (runner, jobId) => this.reference(runner, jobId), logger);
      this.stagingRelay = reports;
    }
    // Also on a replica that only serves the API: service-info shows whether each runner answers.
    void pool.start();
  }

  onUpdate(listener: UpdateListener): void {
    this.listener = listener;
  }

  acceptReports(reports: TaskReports): void {
    this.amqp?.accept(reports);
  }

  available(waitKey: string): boolean {
    return this.pool.available(waitKey);
  }

  /** The runners and whether each answers, for service-info. */
  describe(): Record<string, unknown> {
    return {
      runners: [...this.pool.runners.values()].map((runner) => ({
        name: runner.entry.name,
        transport: runner.entry.transport,
        ...(runner.transport === 'amqp' ? { broker: runner.amqp.link.label, queue: runner.amqp.queues.setup } : {}),
        up: runner.up === true,
        tesp_runner: runner.capabilities !== undefined,
        runtime: runner.capabilities?.runtime ?? runner.entry.runtime,
        ...(runner.capabilities?.scheduler ? { scheduler: runner.capabilities.scheduler } : {}),
        direct_staging: runner.capabilities?.staging_schemes ?? (runner.entry.staging === 'direct' ? ['(the runner\'s own)'] : []),
      })),
    };
  }

  async submit(task: StoredTask): Promise<BackendRef> {
    const running = this.runs.get(task.id);
    if (running) return this.reference(running.runner, running.job.jobId);
    const runner = await this.pool.pick(task.resources?.backend_parameters?.runner);
    if (runner.transport === 'amqp') return this.amqp!.submit(task, runner);
    const wanted = `${task.id}-${task.control.attempt}`;
    let jobId: string;
    try {
      jobId = await runner.client.setup(wanted);
    } catch (err) {
      if (err instanceof PulsarRequestError && err.transient) {
        this.pool.markDown(runner, errorMessage(err));
        const named = task.resources?.backend_parameters?.runner;
        throw new BackendUnavailable(named ?? ANY_RUNNER, `runner ${runner.entry.name} does not answer (${errorMessage(err)}); the task starts when ${named ? 'it' : 'a runner'} is back`);
      }
      throw err;
    }
    if (!isSafeJobId(jobId)) throw new Error(`runner ${runner.entry.name} gave the job id ${JSON.stringify(jobId.slice(0, 80))}, which is not safe to use`);
    this.begin(task, runner, jobId, 'run');
    return this.reference(runner, jobId);
  }

  async resume(task: StoredTask): Promise<ResumeOutcome> {
    if (this.runs.has(task.id)) return { kind: 'resumed', detail: 'its job is followed in this process already' };
    const located = this.locate(task);
    if ('reason' in located) return { kind: 'lost', reason: located.reason };
    const { runner, jobId } = located;
    if (runner.transport === 'amqp') return this.amqp!.resume(task, runner, jobId);
    let state: string;
    try {
      state = (await runner.client.status(jobId)).status;
    } catch (err) {
      if (!(err instanceof PulsarRequestError && err.transient)) throw err;
      // A runner that does not answer now may answer later: follow the job, with back-off.
      this.begin(task, runner, jobId, 'resume');
      return { kind: 'resumed', detail: `runner ${runner.entry.name} does not answer yet (${errorMessage(err)}); following job ${jobId} when it does` };
    }
    if (state === 'lost') return { kind: 'lost', reason: `runner ${runner.entry.name} no longer knows job ${jobId}` };
    if (state === 'preprocessing' && task.state === TesState.INITIALIZING) {
      // Set up but perhaps never submitted (its inputs were on their way): start over rather than wait forever.
      await runner.client.clean(jobId).catch(() => undefined);
      return { kind: 'lost', reason: `job ${jobId} on runner ${runner.entry.name} had not been submitted when its holder stopped` };
    }
    this.begin(task, runner, jobId, 'resume');
    return { kind: 'resumed', detail: `following job ${jobId} on runner ${runner.entry.name} (${state})` };
  }

  async cancel(task: StoredTask): Promise<string> {
    const run = this.runs.get(task.id);
    run?.cancel.abort();
    const located = this.locate(task);
    if ('reason' in located) {
      await run?.done;
      return located.reason === NO_REF ? 'nothing of it had reached a runner' : `its job could not be stopped: ${located.reason}`;
    }
    const { runner, jobId } = located;
    if (runner.transport === 'amqp') return this.amqp!.cancel(task, runner, jobId);
    const where = `job ${jobId} on runner ${runner.entry.name}`;
    const reached = await this.untilReached(() => runner.client.cancel(jobId));
    await run?.done;
    if (!reached) return `${where} could not be reached to stop it (the runner did not answer for ${CANCEL_REACH_MS / 1000} s); it may still run`;
    // Judged by status, never by the return code (a killed job's is -9, 137, null or "").
    let state = 'unknown';
    const deadline = Date.now() + CANCEL_CONFIRM_MS;
    while (Date.now() < deadline) {
      state = await runner.client.status(jobId).then((s) => (s.complete ? s.status : 'stopping'), () => 'unknown');
      if (state !== 'stopping' && state !== 'unknown') break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const containers = await this.removeContainers(task, runner, jobId);
    await runner.client.clean(jobId).catch(() => undefined);
    return `${where} was stopped (${state})${containers}, and its directory cleaned`;
  }

  async release(taskId: string): Promise<void> {
    this.amqp?.release(taskId);
    await this.runs.release(taskId);
  }

  async detach(): Promise<void> {
    this.amqp?.detach();
    await this.runs.detachAll();
    await this.pool.stop();
  }

  /** Resolves when this process follows no job of the task any more. */
  settled(taskId: string): Promise<void> {
    return this.runs.settled(taskId);
  }

  private reference(runner: Runner, jobId: string): BackendRef {
    return { backend: this.name, runner: runner.entry.name, job_id: jobId, manager: runner.entry.manager };
  }

  private locate(task: StoredTask): { runner: Runner; jobId: string } | { reason: string } {
    const ref = task.control.backend_ref;
    if (!ref || typeof ref.job_id !== 'string') return { reason: NO_REF };
    const runner = this.pool.runners.get(String(ref.runner));
    if (!runner) return { reason: `its runner "${String(ref.runner)}" is no longer configured (compute.pulsar.runners)` };
    return { runner, jobId: ref.job_id };
  }

  private begin(task: StoredTask, runner: RestRunner, jobId: string, how: 'run' | 'resume'): void {
    let seq = task.control.update_seq;
    const emit = (update: TaskUpdate) => this.listener?.(task.id, update, ++seq) ?? Promise.resolve(false);
    const detach = new AbortController();
    const cancel = new AbortController();
    const job = new PulsarJob(runner, jobId, buildExecutionPlan(task), this.storage, this.settings, { emit, detach: detach.signal, cancel: cancel.signal });
    const run: Run = { job, runner, detach, cancel, done: Promise.resolve(undefined) };
    this.runs.set(task.id, run);
    runner.active += 1;
    run.done = (how === 'run' ? job.run() : job.resume())
      .catch((err: unknown) => {
        this.logger.error({ taskId: task.id, err: errorMessage(err) }, 'pulsar job failed');
        return undefined;
      })
      .finally(() => {
        runner.active -= 1;
        if (this.runs.get(task.id) === run) this.runs.delete(task.id);
      });
  }

  /** Tries a request to a runner until it answers (or CANCEL_REACH_MS passed); false when it never did. */
  private async untilReached(request: () => Promise<void>): Promise<boolean> {
    const deadline = Date.now() + CANCEL_REACH_MS;
    for (let delay = 250; ; delay = Math.min(delay * 2, 5000)) {
      try {
        await request();
        return true;
      } catch (err) {
        if (!(err instanceof PulsarRequestError && err.transient) || Date.now() > deadline) return false;
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  /**
   * A real Pulsar SIGKILLs the job script, and a `docker run` it started keeps its container: a second job removes
   * them by name. A tesp runner removes its jobs' containers itself.
   */
  private async removeContainers(task: StoredTask, runner: RestRunner, jobId: string): Promise<string> {
    const runtime = runner.capabilities?.runtime ?? runner.entry.runtime;
    if (runner.capabilities || runtime !== 'docker' || task.executors.length === 0) return '';
    const names = task.executors.map((_, index) => jobContainerName(jobId, index));
    const cleanupId = `${jobId}-rm`;
    try {
      const id = await runner.client.setup(cleanupId);
      await runner.client.submit(id, `docker rm -f ${names.join(' ')} >/dev/null 2>&1; true`);
      const deadline = Date.now() + CANCEL_CONFIRM_MS;
      while (Date.now() < deadline && !(await runner.client.status(id)).complete) await new Promise((resolve) => setTimeout(resolve, 250));
      await runner.client.clean(id).catch(() => undefined);
      return `, its containers removed by job ${id}`;
    } catch (err) {
      return `; removing its containers failed: ${errorMessage(err)}`;
    }
  }
}

const NO_REF = 'no job reference';

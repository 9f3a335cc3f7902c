import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Logger } from '../../common/logger';
import { errorMessage } from '../../common/redact';
import type { TaskUpdate } from '../../domain/task-update';
import { BackendRef, StoredTask, TesState } from '../../domain/tes-task';
import { MAX_TIME, SHM_SIZE_GB, SLURM_ACCOUNT, SLURM_PARTITION, WALLTIME } from '../../engine/backend-parameters';
import type { ContainerSweeper } from '../../engine/container-sweeper';
import type { SlurmClient } from '../../engine/slurm-client';
import { slurmJobFiles, slurmJobName } from '../../engine/slurm-job';
import { jobPhase, SlurmJobWatch } from '../../engine/slurm-job-watch';
import type { Staging } from '../../engine/staging';
import type { RunEnd } from '../../engine/task-runner';
import type { ComputeBackend, ResumeOutcome, UpdateListener } from '../compute-backend';
import { FollowedRuns } from '../followed-runs';
import { SlurmRunSettings, SlurmTaskRun } from './slurm-task-run';

// The local backend's slurm runtime (compute.local.runtime: slurm): each attempt of a task is one Slurm job,
// submitted with sbatch from this host. The backend reference names the runtime, the task directory on the shared
// work directory and the job name, and gains the Slurm job id once sbatch answered (a backend-ref update); the id is
// also in <task dir>/slurm/job-id and the task log's metadata. Jobs outlive tesp: a restarted tesp finds each by its
// reference, its id file, or its name when it died right after sbatch.

export interface SlurmBackendSettings {
  /** Task directories live at <workDir>/<task id>; the nodes see it at the same path. */
  workDir: string;
  keepTaskDirs: boolean;
  maxConcurrentTasks: number;
  run: SlurmRunSettings;
}

interface Run {
  task: SlurmTaskRun;
  detach: AbortController;
  cancel: AbortController;
  done: Promise<RunEnd | undefined>;
}

/** How long a cancel waits for Slurm to show the job ended (its KillWait included). */
const CANCEL_CONFIRM_MS = 60_000;

export class SlurmComputeBackend implements ComputeBackend {
  readonly name = 'local';
  readonly backendParameters = [MAX_TIME, WALLTIME, SLURM_PARTITION, SLURM_ACCOUNT, SHM_SIZE_GB];
  readonly capacity: ComputeBackend['capacity'];
  private listener?: UpdateListener;
  private readonly runs = new FollowedRuns<Run>();

  constructor(
    private readonly client: SlurmClient,
    private readonly watch: SlurmJobWatch,
    private readonly staging: Staging,
    private readonly sweeper: ContainerSweeper,
    private readonly settings: SlurmBackendSettings,
    private readonly logger: Logger,
  ) {
    this.capacity = { tasks: settings.maxConcurrentTasks, setting: `compute.local.max_concurrent_tasks = ${settings.maxConcurrentTasks}` };
  }

  onUpdate(listener: UpdateListener): void {
    this.listener = listener;
  }

  describe(): Record<string, unknown> {
    return { runtime: 'slurm', containers: this.settings.run.containers, work_dir: this.settings.workDir, state_rounds: this.watch.roundCount };
  }

  async submit(task: StoredTask): Promise<BackendRef> {
    if (!this.runs.has(task.id)) {
      // Whatever an earlier attempt left (its job included) must not linger beside this one.
      if (task.control.attempt > 1) await this.clearTaskDir(task.id);
      this.begin(task, undefined);
    }
    return this.reference(task);
  }

  async resume(task: StoredTask): Promise<ResumeOutcome> {
    if (this.runs.has(task.id)) return { kind: 'resumed', detail: 'its Slurm job is followed in this process already' };
    const elsewhere = this.elsewhere(task);
    if (elsewhere) return { kind: 'lost', reason: elsewhere };
    const jobId = await this.findJob(task);
    if (jobId) {
      this.begin(task, jobId);
      return { kind: 'resumed', detail: `following Slurm job ${jobId} again` };
    }
    await this.clearTaskDir(task.id);
    if (task.state === TesState.INITIALIZING) {
      // It was still staging (no job was submitted): start over.
      this.begin(task, undefined);
      return { kind: 'resumed', detail: 'no Slurm job had been submitted; staging the inputs again' };
    }
    return { kind: 'lost', reason: `no Slurm job of it was found (no ${path.join(this.taskDir(task.id), 'slurm', 'job-id')}, no job named ${slurmJobName(task.id, task.control.attempt)})` };
  }

  async cancel(task: StoredTask): Promise<string> {
    const run = this.runs.get(task.id);
    run?.cancel.abort();
    const elsewhere = run ? undefined : this.elsewhere(task);
    if (elsewhere) return `its work could not be stopped from here: ${elsewhere}`;
    await run?.done;
    const jobId = run?.task.jobId ?? (await this.findJob(task));
    if (!jobId) {
      await this.removeTaskDir(task.id);
      return 'no Slurm job had been submitted';
    }
    let state = 'unknown';
    try {
      await this.client.cancel(jobId);
      // Ended once Slurm says so; the job script removes its containers on the way (SIGTERM, KillWait, SIGKILL).
      const deadline = Date.now() + CANCEL_CONFIRM_MS;
      while (Date.now() < deadline) {
        const lookup = await this.watch.next({ id: jobId, name: slurmJobName(task.id, task.control.attempt) });
        state = lookup.kind === 'state' ? lookup.state.state : lookup.kind;
        if (lookup.kind === 'unknown' || (lookup.kind === 'state' && jobPhase(lookup.state.state) === 'ended')) break;
      }
    } catch (err) {
      return `scancel of Slurm job ${jobId} failed: ${errorMessage(err)}; it may still run`;
    }
    // Where this host reaches the nodes' Docker (one-node clusters, tests), what the script could not remove goes too.
    const removed = this.settings.run.containers === 'docker' ? await this.sweeper.removeContainersOf(`${task.id}-${task.control.attempt}`) : 0;
    await this.removeTaskDir(task.id);
    return `Slurm job ${jobId} was cancelled (${state})${removed > 0 ? `, ${removed} container(s) of it removed` : ''}`;
  }

  release(taskId: string): Promise<void> {
    return this.runs.release(taskId);
  }

  /** Resolves when this process follows no run of the task any more. */
  settled(taskId: string): Promise<void> {
    return this.runs.settled(taskId);
  }

  async detach(): Promise<void> {
    await this.runs.detachAll();
    this.watch.stop();
  }

  private taskDir(taskId: string): string {
    return path.join(this.settings.workDir, taskId);
  }

  private reference(task: StoredTask): BackendRef {
    return { backend: this.name, runtime: 'slurm', task_dir: this.taskDir(task.id), job_name: slurmJobName(task.id, task.control.attempt), job_id_file: slurmJobFiles(this.taskDir(task.id)).jobIdFile };
  }

  private elsewhere(task: StoredTask): string | undefined {
    const ref = task.control.backend_ref;
    if (!ref) return undefined;
    if (ref.runtime !== 'slurm') return `it ran with the ${String(ref.runtime)} runtime; this replica runs slurm`;
    if (ref.task_dir !== this.taskDir(task.id)) return `its task directory is ${String(ref.task_dir)}; this replica's would be ${this.taskDir(task.id)}`;
    return undefined;
  }

  /**
   * The task's job: the id in its backend reference, else the one its run wrote down (tesp died before the reference
   * was stored), else (tesp died right after sbatch) the one Slurm lists by its name.
   */
  private async findJob(task: StoredTask): Promise<string | undefined> {
    const ref = task.control.backend_ref;
    if (ref?.job_name === slurmJobName(task.id, task.control.attempt) && typeof ref.job_id === 'string' && /^\d+$/.test(ref.job_id)) return ref.job_id;
    const recorded = (await fs.readFile(slurmJobFiles(this.taskDir(task.id)).jobIdFile, 'utf8').catch(() => '')).trim();
    if (/^\d+$/.test(recorded)) return recorded;
    const named = await this.client.jobsNamed(slurmJobName(task.id, task.control.attempt));
    return named.at(-1);
  }

  private begin(task: StoredTask, jobId: string | undefined): void {
    let seq = task.control.update_seq;
    const emit = (update: TaskUpdate) => this.listener?.(task.id, update, ++seq) ?? Promise.resolve(false);
    const detach = new AbortController();
    const cancel = new AbortController();
    const parts = { client: this.client, watch: this.watch, staging: this.staging, settings: this.settings.run, logger: this.logger };
    const slurmRun = new SlurmTaskRun(task, this.taskDir(task.id), this.reference(task), parts, { emit, detach: detach.signal, cancel: cancel.signal });
    const run: Run = { task: slurmRun, detach, cancel, done: Promise.resolve(undefined) };
    this.runs.set(task.id, run);
    run.done = (jobId ? slurmRun.resume(jobId) : slurmRun.start())
      .then(async (end) => {
        if (end === 'finished') await this.removeTaskDir(task.id);
        return end;
      })
      .catch((err: unknown) => {
        this.logger.error({ taskId: task.id, err: errorMessage(err) }, 'slurm run failed');
        return undefined;
      })
      .finally(() => {
        if (this.runs.get(task.id) === run) this.runs.delete(task.id);
      });
  }

  /** Cancels the job an earlier attempt left and removes its directory. */
  private async clearTaskDir(taskId: string): Promise<void> {
    const recorded = (await fs.readFile(slurmJobFiles(this.taskDir(taskId)).jobIdFile, 'utf8').catch(() => '')).trim();
    if (/^\d+$/.test(recorded)) await this.client.cancel(recorded).catch(() => undefined);
    await fs.rm(this.taskDir(taskId), { recursive: true, force: true });
  }

  private async removeTaskDir(taskId: string): Promise<void> {
    if (this.settings.keepTaskDirs) return;
    await fs.rm(this.taskDir(taskId), { recursive: true, force: true }).catch((err: unknown) => {
      this.logger.warn({ taskId, err: errorMessage(err) }, 'could not remove a task directory');
    });
  }
}

import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Logger } from '../../common/logger';
import { errorMessage } from '../../common/redact';
import type { TaskUpdate } from '../../domain/task-update';
import { BackendRef, StoredTask, TesState } from '../../domain/tes-task';
import { SHM_SIZE_GB } from '../../engine/backend-parameters';
import { buildExecutionPlan, TaskLayout, taskLayout } from '../../engine/execution-plan';
import type { LeftoverExecutor } from '../../engine/executor-runtime';
import type { RunEnd, TaskRunner } from '../../engine/task-runner';
import type { ComputeBackend, ResumeOutcome, UpdateListener } from '../compute-backend';
import { FollowedRuns } from '../followed-runs';

export interface LocalBackendSettings {
  /** Task directories live at <workDir>/<task id> (data_dir/work). */
  workDir: string;
  keepTaskDirs: boolean;
  maxConcurrentTasks: number;
}

interface Run {
  /** Stop following and reporting; leave the work running (shutdown, or the task is held elsewhere now). */
  detach: AbortController;
  cancel: AbortController;
  done: Promise<RunEnd | undefined>;
}

/**
 * Runs tasks on this machine through the engine's TaskRunner, with Docker containers or plain processes. The
 * backend reference names the runtime, where its executors live (the Docker engine's id, or the host) and the task
 * directory, so a replica that takes a task over adopts its containers only where it can reach them.
 */
export class LocalComputeBackend implements ComputeBackend {
  readonly name = 'local';
  readonly backendParameters = [SHM_SIZE_GB];
  readonly capacity: ComputeBackend['capacity'];
  private listener?: UpdateListener;
  private readonly runs = new FollowedRuns<Run>();

  constructor(
    private readonly runner: TaskRunner,
    private readonly settings: LocalBackendSettings,
    private readonly logger: Logger,
  ) {
    this.capacity = { tasks: settings.maxConcurrentTasks, setting: `compute.local.max_concurrent_tasks = ${settings.maxConcurrentTasks}` };
  }

  private get runtime() {
    return this.runner.runtime;
  }

  onUpdate(listener: UpdateListener): void {
    this.listener = listener;
  }

  async submit(task: StoredTask): Promise<BackendRef> {
    const ref = await this.reference(task.id);
    // A first attempt has nothing before it to clear away; a later one may have.
    if (!this.runs.has(task.id)) this.begin(task, { clear: task.control.attempt > 1 });
    return ref;
  }

  async resume(task: StoredTask): Promise<ResumeOutcome> {
    if (this.runs.has(task.id)) return { kind: 'resumed', detail: 'its run goes on in this process' };
    const layout = this.layoutOf(task.id);
    const elsewhere = await this.elsewhere(task);
    if (elsewhere) return { kind: 'lost', reason: elsewhere };
    const leftovers = await this.runtime.leftovers(task.id);
    if (leftovers.length > 0) {
      this.begin(task, { leftovers });
      const running = leftovers.filter((l) => l.running).length;
      return { kind: 'resumed', detail: `adopted ${leftovers.length} executor container(s), ${running} still running` };
    }
    // Processes a dead tesp left behind must not run on beside a new start.
    const stopped = await this.runtime.removeAll(task.id, layout, { leftovers: true });
    const ended = stopped > 0 ? ` (ended ${stopped} process(es) its earlier run left)` : '';
    if (task.state === TesState.INITIALIZING) {
      // What the earlier run left has just been stopped; only its directory remains to clear.
      await fs.rm(layout.taskDir, { recursive: true, force: true });
      this.begin(task, { clear: false });
      return { kind: 'resumed', detail: `no executor had started; staging the inputs again${ended}` };
    }
    await this.removeTaskDir(task.id);
    return {
      kind: 'lost',
      reason: this.runtime.survivesRestart
        ? 'its executor containers are gone'
        : `the ${this.runtime.kind} runtime cannot adopt executors another process started${ended}`,
    };
  }

  async cancel(task: StoredTask): Promise<string> {
    const run = this.runs.get(task.id);
    const elsewhere = run ? undefined : await this.elsewhere(task);
    if (elsewhere) return `its work could not be stopped from here: ${elsewhere}`;
    run?.cancel.abort();
    // Kills the executor in progress (the run then reports its exit) and whatever an earlier process left.
    const stopped = await this.runtime.removeAll(task.id, this.layoutOf(task.id), { leftovers: true });
    if (run) {
      await run.done;
      return 'its executors were stopped and removed';
    }
    await this.removeTaskDir(task.id);
    return stopped > 0 ? `stopped ${stopped} executor(s) no run in this process followed` : 'nothing of it was running';
  }

  release(taskId: string): Promise<void> {
    return this.runs.release(taskId);
  }

  /** Resolves when this process follows no run of the task any more (its clean-up included). */
  settled(taskId: string): Promise<void> {
    return this.runs.settled(taskId);
  }

  async detach(): Promise<void> {
    // Without containers nothing survives a shutdown: stop the processes rather than orphan them.
    await this.runs.detachAll(async (ids) => {
      if (!this.runtime.survivesRestart) await Promise.all(ids.map((id) => this.runtime.removeAll(id, this.layoutOf(id), { leftovers: false })));
    });
  }

  /** Why this replica cannot reach the task's work, from its backend reference; undefined when it can. */
  private async elsewhere(task: StoredTask): Promise<string | undefined> {
    const ref = task.control.backend_ref;
    if (!ref) return undefined; // claimed, but the reference was never stored: its work can only be here
    const mine = await this.reference(task.id);
    const differs = (['runtime', 'location', 'task_dir'] as const).filter((key) => ref[key] !== mine[key]);
    if (differs.length === 0) return undefined;
    return `it ran with the ${String(ref.runtime)} runtime at ${String(ref.location)} in ${String(ref.task_dir)}; this replica runs ${String(mine.runtime)} at ${String(mine.location)} in ${String(mine.task_dir)}`;
  }

  private async reference(taskId: string): Promise<BackendRef> {
    return {
      backend: this.name,
      runtime: this.runtime.kind,
      location: await this.runtime.location(),
      task_dir: this.layoutOf(taskId).taskDir,
      executors: this.runtime.kind === 'docker' ? `containers labelled tesp.task=${taskId}` : 'processes whose environment has TESP_TASK_ROOT=<task_dir>/root',
    };
  }

  /** Starts following a run: adopting what an earlier run left, or from staging (clearing the task's traces first). */
  private begin(task: StoredTask, start: { leftovers: LeftoverExecutor[] } | { clear: boolean }): void {
    const layout = this.layoutOf(task.id);
    const run: Run = { detach: new AbortController(), cancel: new AbortController(), done: Promise.resolve(undefined) };
    this.runs.set(task.id, run);
    let seq = task.control.update_seq;
    const emit = (update: TaskUpdate) => this.listener?.(task.id, update, ++seq);
    run.done = this.execute(task, layout, run, start, emit)
      .catch((err: unknown) => {
        // The run loop reports its own failures; this is a failure around it, and the task must still end.
        this.logger.error({ taskId: task.id, err: errorMessage(err) }, 'local backend run failed');
        if (!run.detach.signal.aborted && !run.cancel.signal.aborted) emit({ kind: 'finished', state: 'SYSTEM_ERROR', reason: `the local run failed: ${errorMessage(err)}` });
        return undefined;
      })
      .finally(() => {
        if (this.runs.get(task.id) === run) this.runs.delete(task.id);
      });
  }

  private async execute(task: StoredTask, layout: TaskLayout, run: Run, start: { leftovers: LeftoverExecutor[] } | { clear: boolean }, emit: (update: TaskUpdate) => void): Promise<RunEnd> {
    const leftovers = 'leftovers' in start ? start.leftovers : undefined;
    if ('clear' in start && start.clear) {
      try {
        // Nothing of an earlier attempt or a broken-off staging may linger.
        await this.runtime.removeAll(task.id, layout, { leftovers: true });
        await fs.rm(layout.taskDir, { recursive: true, force: true });
      } catch (err) {
        emit({ kind: 'finished', state: 'SYSTEM_ERROR', reason: `could not clear what an earlier attempt left: ${errorMessage(err)}` });
        return 'finished';
      }
    }
    const end = await this.runner.run(buildExecutionPlan(task), layout, {
      emit,
      detach: run.detach.signal,
      cancel: run.cancel.signal,
      leftovers,
      progress: (event) => this.logger.info({ taskId: task.id, ...event }, event.done ? 'transfer finished' : 'transfer progress'),
    });
    // Containers go when the task ends (not earlier: another run reads exit codes from them).
    if (end !== 'detached') await this.cleanUp(task.id, layout);
    return end;
  }

  private layoutOf(taskId: string): TaskLayout {
    return taskLayout(path.join(this.settings.workDir, taskId));
  }

  private async removeTaskDir(taskId: string): Promise<void> {
    if (!this.settings.keepTaskDirs) await fs.rm(this.layoutOf(taskId).taskDir, { recursive: true, force: true });
  }

  private async cleanUp(taskId: string, layout: TaskLayout): Promise<void> {
    try {
      await this.runtime.removeAll(taskId, layout, { leftovers: false });
      await this.removeTaskDir(taskId);
    } catch (err) {
      this.logger.warn({ taskId, err: errorMessage(err) }, 'could not clean up after a task');
    }
  }
}

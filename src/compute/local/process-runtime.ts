import { ChildProcess, spawn } from 'node:child_process';
import { createReadStream, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { constants as osConstants } from 'node:os';
import type { ExecutionPlan, PlanExecutor } from '../execution-plan';
import type { ExecutorOutput } from './executor-output';
import { abortedError, ExecutorExit, ExecutorRuntime, LeftoverExecutor, RunningExecutor } from './executor-runtime';

export interface ProcessRuntimeSettings {
  stop_timeout_s: number;
}

// Docker's default PATH; the host's own environment is not passed to executors.
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * Runs executors as plain child processes, for hosts without Docker. The image is ignored, and resource limits
 * (cpu_cores, ram_gb, shm) and network isolation are NOT enforced; container paths live under the task root,
 * exported as TESP_TASK_ROOT, and the working directory is the workdir under that root.
 */
export class ProcessRuntime implements ExecutorRuntime {
  readonly kind = 'process' as const;
  readonly survivesRestart = false;
  private readonly children = new Map<string, Set<ChildProcess>>();

  constructor(private readonly settings: ProcessRuntimeSettings) {}

  async start(plan: ExecutionPlan, executor: PlanExecutor, output: ExecutorOutput, signal: AbortSignal): Promise<RunningExecutor> {
    if (signal.aborted) throw abortedError();
    const cwd = executor.workdir ? path.join(plan.rootDir, executor.workdir) : plan.rootDir;
    await fs.mkdir(cwd, { recursive: true });
    const startTime = new Date().toISOString();
    const child = spawn(executor.command[0], executor.command.slice(1), {
      cwd,
      env: { PATH: DEFAULT_PATH, HOME: plan.rootDir, ...executor.env, TESP_TASK_ROOT: plan.rootDir },
      stdio: [executor.stdinHostPath ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      detached: true, // its own process group, so a stop reaches grandchildren too
    });
    const group = this.children.get(plan.taskId) ?? new Set();
    group.add(child);
    this.children.set(plan.taskId, group);
    if (executor.stdinHostPath && child.stdin) {
      const input = createReadStream(executor.stdinHostPath);
      input.on('error', () => child.stdin?.end());
      child.stdin.on('error', () => undefined); // the command may exit without reading its stdin
      input.pipe(child.stdin);
    }
    child.stdout!.pipe(output.stdout);
    child.stderr!.pipe(output.stderr);
    const exited = new Promise<ExecutorExit>((resolve, reject) => {
      const onAbort = () => reject(abortedError());
      signal.addEventListener('abort', onAbort, { once: true });
      child.once('error', (err) => {
        signal.removeEventListener('abort', onAbort);
        output.stderr.write(Buffer.from(`tesp: cannot execute ${JSON.stringify(executor.command[0])}: ${err.message}\n`));
        group.delete(child);
        resolve({ exitCode: (err as NodeJS.ErrnoException).code === 'ENOENT' ? 127 : 126, startTime, endTime: new Date().toISOString() });
      });
      // As in a container, what the command left running in the background ends with it (and releases stdout).
      child.once('exit', () => {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          // the group is gone already
        }
      });
      // 'close' comes after stdout and stderr have ended, so the tails are complete.
      child.once('close', (code, signalName) => {
        signal.removeEventListener('abort', onAbort);
        group.delete(child);
        const exitCode = code ?? 128 + (signalName ? (osConstants.signals[signalName] ?? 0) : 0);
        resolve({ exitCode, startTime, endTime: new Date().toISOString() });
      });
    });
    return { startTime, exited };
  }

  async leftovers(): Promise<LeftoverExecutor[]> {
    return []; // processes die with tesp
  }

  async adopt(): Promise<RunningExecutor> {
    throw new Error('the process runtime cannot adopt executors after a restart');
  }

  async removeAll(taskId: string): Promise<void> {
    const group = this.children.get(taskId);
    if (!group) return;
    const live = [...group].filter((child) => child.exitCode === null && child.signalCode === null && child.pid !== undefined);
    const gone = Promise.all(live.map((child) => new Promise<void>((resolve) => child.once('close', () => resolve()))));
    const signalGroup = (name: NodeJS.Signals) => {
      for (const child of live) {
        try {
          process.kill(-child.pid!, name);
        } catch {
          // already gone
        }
      }
    };
    signalGroup('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const stopped = await Promise.race([
      gone.then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), this.settings.stop_timeout_s * 1000))),
    ]);
    clearTimeout(timer);
    if (!stopped) {
      signalGroup('SIGKILL');
      await gone;
    }
    // Grandchildren that left the group's leader behind get the SIGKILL too.
    signalGroup('SIGKILL');
    this.children.delete(taskId);
  }
}

import { ChildProcess, spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import { constants as osConstants } from 'node:os';
import { ExecutionPlan, hostPath, PlanExecutor, TaskLayout } from './execution-plan';
import type { ExecutorOutput } from './executor-output';
import { abortedError, ExecutorExit, ExecutorIo, ExecutorRuntime, LeftoverExecutor, RunningExecutor, StartSignals } from './executor-runtime';

export interface ProcessRuntimeSettings {
  stop_timeout_s: number;
}

// Docker's default PATH; the host's own environment is not passed to executors.
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Every executor process carries its task root in this variable; it is also how leftovers are found. */
export const TASK_ROOT_VARIABLE = 'TESP_TASK_ROOT';

/**
 * Runs executors as plain child processes, for hosts without Docker. The image is ignored, and resource limits
 * (cpu_cores, ram_gb, shm) and network isolation are NOT enforced; container paths live under the task root,
 * exported as TESP_TASK_ROOT, and the working directory is the workdir under that root. Each executor runs in a
 * process group of its own, so a stop reaches what it started too.
 */
export class ProcessRuntime implements ExecutorRuntime {
  readonly kind = 'process' as const;
  readonly survivesRestart = false;
  private readonly children = new Map<string, Set<ChildProcess>>();

  constructor(private readonly settings: ProcessRuntimeSettings) {}

  async location(): Promise<string> {
    return `host ${os.hostname()}`;
  }

  async start(plan: ExecutionPlan, executor: PlanExecutor, layout: TaskLayout, io: ExecutorIo, signals: StartSignals): Promise<RunningExecutor> {
    if (signals.abort.aborted) throw abortedError();
    const { output } = io;
    const cwd = executor.workdir ? hostPath(layout.rootDir, executor.workdir) : layout.rootDir;
    await fs.mkdir(cwd, { recursive: true });
    const startTime = new Date().toISOString();
    const child = spawn(executor.command[0], executor.command.slice(1), {
      cwd,
      env: { PATH: DEFAULT_PATH, HOME: layout.rootDir, ...executor.env, [TASK_ROOT_VARIABLE]: layout.rootDir },
      stdio: [io.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      detached: true, // its own process group, so a stop reaches grandchildren too
    });
    const group = this.children.get(plan.taskId) ?? new Set();
    group.add(child);
    this.children.set(plan.taskId, group);
    if (io.stdin && child.stdin) {
      io.stdin.on('error', () => child.stdin?.end());
      child.stdin.on('error', () => undefined); // the command may exit without reading its stdin
      io.stdin.pipe(child.stdin);
    }
    child.stdout!.pipe(output.stdout);
    child.stderr!.pipe(output.stderr);
    const exited = new Promise<ExecutorExit>((resolve, reject) => {
      const onDetach = () => reject(abortedError());
      signals.detach.addEventListener('abort', onDetach, { once: true });
      child.once('error', (err) => {
        signals.detach.removeEventListener('abort', onDetach);
        output.stderr.write(Buffer.from(`tesp: cannot execute ${JSON.stringify(executor.command[0])}: ${err.message}\n`));
        group.delete(child);
        resolve({ exitCode: (err as NodeJS.ErrnoException).code === 'ENOENT' ? 127 : 126, startTime, endTime: new Date().toISOString() });
      });
      // As in a container, what the command left running in the background ends with it (and releases stdout).
      child.once('exit', () => {
        if (child.pid !== undefined) signal(groupsOf([child.pid]), 'SIGKILL');
      });
      // 'close' comes after stdout and stderr have ended, so the tails are complete.
      child.once('close', (code, signalName) => {
        signals.detach.removeEventListener('abort', onDetach);
        group.delete(child);
        const exitCode = code ?? 128 + (signalName ? (osConstants.signals[signalName] ?? 0) : 0);
        resolve({ exitCode, startTime, endTime: new Date().toISOString() });
      });
    });
    return { startTime, exited };
  }

  async leftovers(): Promise<LeftoverExecutor[]> {
    return []; // a process cannot be followed again by another process
  }

  async adopt(): Promise<RunningExecutor> {
    throw new Error('the process runtime cannot adopt executors another process started');
  }

  async removeAll(taskId: string, layout: TaskLayout, options: { leftovers: boolean }): Promise<number> {
    const live = [...(this.children.get(taskId) ?? [])].filter((child) => child.exitCode === null && child.signalCode === null && child.pid !== undefined);
    const gone = Promise.all(live.map((child) => new Promise<void>((resolve) => child.once('close', () => resolve()))));
    const followed = new Set(live.map((child) => child.pid!));
    // Processes of a run no process here follows (tesp died, its children did not) carry the task root in their
    // environment; grandchildren inherit it.
    const strays = options.leftovers ? (await processesWithEnv(`${TASK_ROOT_VARIABLE}=${layout.rootDir}`)).filter((pid) => !followed.has(pid)) : [];
    const targets = [...groupsOf([...followed]), ...strays];
    signal(targets, 'SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), this.settings.stop_timeout_s * 1000)));
    const stopped = await Promise.race([Promise.all([gone, waitUntilGone(strays)]).then(() => true), timeout]);
    clearTimeout(timer);
    if (!stopped) {
      signal(targets, 'SIGKILL');
      await gone;
    }
    // Grandchildren that left the group's leader behind get the SIGKILL too.
    signal(groupsOf([...followed]), 'SIGKILL');
    this.children.delete(taskId);
    return live.length + strays.length;
  }
}

/** The process groups led by these processes, as kill() takes them. */
export function groupsOf(leaders: readonly number[]): number[] {
  return leaders.map((pid) => -pid);
}

/** Sends a signal to each process (or, for a negative id, process group) that still exists. */
export function signal(targets: readonly number[], name: NodeJS.Signals): void {
  for (const target of targets) {
    try {
      process.kill(target, name);
    } catch {
      // gone already
    }
  }
}

/** Processes (other than this one) whose environment holds `entry` exactly, e.g. TESP_TASK_ROOT=/data/work/x/root. */
export async function processesWithEnv(entry: string): Promise<number[]> {
  const marker = Buffer.from(`\0${entry}\0`);
  const found: number[] = [];
  for (const name of await fs.readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const environ = await fs.readFile(`/proc/${name}/environ`).catch(() => undefined);
    if (!environ) continue;
    // The first entry has no NUL before it.
    if (Buffer.concat([Buffer.from([0]), environ]).includes(marker)) found.push(Number(name));
  }
  return found;
}

/** Resolves when none of the processes exists any more (zombies count as gone), checking every 50 ms. */
export async function waitUntilGone(pids: readonly number[]): Promise<void> {
  let left = [...pids];
  while (left.length > 0) {
    const alive = await Promise.all(left.map(isAlive));
    left = left.filter((_, i) => alive[i]);
    if (left.length > 0) await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export async function isAlive(pid: number): Promise<boolean> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined);
  return status !== undefined && !/^State:\s*Z/m.test(status);
}

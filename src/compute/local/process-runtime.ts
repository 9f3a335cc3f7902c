import { ChildProcess, spawn } from 'node:child_process';
import { createReadStream, promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { ExecutionPlan, PlanExecutor } from '../execution-plan';
import type { ExecutorOutput } from './executor-output';
import type { ExecutorRuntime, LeftoverExecutor, RunningExecutor } from './executor-runtime';

// Docker's default PATH; the host's own environment is not passed to executors.
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * Runs executors as plain child processes, for hosts without Docker. The image is ignored and resource limits
 * are not enforced; container paths live under the task root, exported as TESP_TASK_ROOT.
 */
export class ProcessRuntime implements ExecutorRuntime {
  readonly kind = 'process' as const;
  readonly survivesRestart = false;
  private readonly children = new Map<string, Set<ChildProcess>>();

  async start(plan: ExecutionPlan, executor: PlanExecutor, output: ExecutorOutput): Promise<RunningExecutor> {
    const cwd = executor.workdir ? path.join(plan.rootDir, executor.workdir) : plan.rootDir;
    await fs.mkdir(cwd, { recursive: true });
    const startTime = new Date().toISOString();
    const child = spawn(executor.command[0], executor.command.slice(1), {
      cwd,
      env: { PATH: DEFAULT_PATH, HOME: plan.rootDir, ...executor.env, TESP_TASK_ROOT: plan.rootDir },
      stdio: [executor.stdinHostPath ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      detached: true, // its own process group, so cancel reaches grandchildren too
    });
    const group = this.children.get(plan.taskId) ?? new Set();
    group.add(child);
    this.children.set(plan.taskId, group);
    if (executor.stdinHostPath && child.stdin) {
      const input = createReadStream(executor.stdinHostPath);
      input.on('error', () => child.stdin?.end());
      child.stdin.on('error', () => undefined);
      input.pipe(child.stdin);
    }
    child.stdout!.pipe(output.stdout);
    child.stderr!.pipe(output.stderr);
    const exited = new Promise<{ exitCode: number; startTime: string; endTime: string }>((resolve) => {
      child.once('error', (err) => {
        output.stderr.write(Buffer.from(`tesp: cannot execute ${JSON.stringify(executor.command[0])}: ${err.message}\n`));
        group.delete(child);
        resolve({ exitCode: 127, startTime, endTime: new Date().toISOString() });
      });
      child.once('close', (code, signal) => {
        group.delete(child);
        const exitCode = code ?? 128 + (signal ? signalNumber(signal) : 0);
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
    const gone = [...group].map((child) => new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('close', () => resolve()))));
    for (const child of group) {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await Promise.all(gone);
    this.children.delete(taskId);
  }
}

function signalNumber(signal: NodeJS.Signals): number {
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };
  return numbers[signal] ?? 0;
}

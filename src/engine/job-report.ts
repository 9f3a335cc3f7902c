import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { TaskUpdate } from '../domain/task-update';
import type { ExecutionPlan } from './execution-plan';
import { TailBuffer } from './executor-output';
import { executorStreamFile, PROGRESS_FILE } from './job-layout';
import { JobProgress, parseProgress } from './job-progress';

// Turns what a job script writes into metadata/tesp (job-layout.ts) into TaskUpdates, for whoever follows the job
// from outside: the pulsar backend (reading through the runner's download route) and the Slurm runs (reading the
// shared work directory). Each executor's start and end is reported once; a running executor's tails at most every
// refresh interval, when they changed.

export interface JobFileReader {
  /** A whole file of metadata/ ("tesp/progress"), or undefined when it is not there (yet). */
  read(name: string): Promise<Buffer | undefined>;
  /** The last bytes of a file of metadata/, as text; empty when it is not there (yet). */
  tail(name: string): Promise<string>;
}

export class JobReporter {
  private running = false;
  private readonly started = new Set<number>();
  private readonly finished = new Set<number>();
  private readonly lastTails = new Map<number, string>();
  private lastTailAt = 0;

  constructor(
    private readonly plan: ExecutionPlan,
    private readonly files: JobFileReader,
    private readonly emit: (update: TaskUpdate) => unknown,
    private readonly refreshMs: number,
  ) {}

  /** Reports what the progress file says that was not reported yet; `final`: the job has ended, skip live tails. */
  async sync(final: boolean): Promise<JobProgress | undefined> {
    const text = (await this.files.read(PROGRESS_FILE))?.toString('utf8');
    if (text === undefined) return undefined;
    const progress = parseProgress(text);
    for (const executor of progress.executors) {
      if (executor.startTime === undefined) continue;
      if (!this.running && this.plan.executors.length > 0) {
        this.running = true;
        this.emit({ kind: 'running' });
      }
      if (!this.started.has(executor.index)) {
        this.started.add(executor.index);
        this.emit({ kind: 'executor-started', index: executor.index, startTime: executor.startTime });
      }
      if (executor.exitCode !== undefined && !this.finished.has(executor.index)) {
        const tails = await this.tails(executor.index);
        this.finished.add(executor.index);
        this.emit({ kind: 'executor-finished', index: executor.index, endTime: executor.endTime ?? new Date().toISOString(), exitCode: executor.exitCode, ...tails });
      } else if (executor.exitCode === undefined && !final && Date.now() - this.lastTailAt >= this.refreshMs) {
        this.lastTailAt = Date.now();
        const tails = await this.tails(executor.index);
        const key = tails.stdout + '\0' + tails.stderr;
        if (this.lastTails.get(executor.index) !== key) {
          this.lastTails.set(executor.index, key);
          this.emit({ kind: 'executor-output', index: executor.index, ...tails });
        }
      }
    }
    return progress;
  }

  /**
   * Ends the executors that started and never exited (the job was killed under them) with `exitCode`; their index
   * and tails are reported. Returns the indexes.
   */
  async endUnfinished(exitCode: number): Promise<number[]> {
    const open = [...this.started].filter((index) => !this.finished.has(index));
    for (const index of open) {
      this.finished.add(index);
      this.emit({ kind: 'executor-finished', index, endTime: new Date().toISOString(), exitCode, ...(await this.tails(index)) });
    }
    return open;
  }

  /** The last bytes of an executor's stdout and stderr files. */
  async tails(index: number): Promise<{ stdout: string; stderr: string }> {
    const [stdout, stderr] = await Promise.all((['stdout', 'stderr'] as const).map((stream) => this.files.tail(executorStreamFile(index, stream))));
    return { stdout, stderr };
  }
}

/** Reads a job directory on this host (a shared file system the job's node writes to). */
export function localJobFiles(jobDir: string, tailBytes: number): JobFileReader {
  const file = (name: string) => path.join(jobDir, 'metadata', ...name.split('/'));
  return {
    read: (name) => fs.readFile(file(name)).catch(() => undefined),
    tail: async (name) => {
      const handle = await fs.open(file(name), 'r').catch(() => undefined);
      if (!handle) return '';
      try {
        const { size } = await handle.stat();
        const length = Math.min(size, tailBytes);
        const { buffer, bytesRead } = await handle.read(Buffer.alloc(length), 0, length, size - length);
        const tail = new TailBuffer(tailBytes);
        tail.push(buffer.subarray(0, bytesRead));
        return tail.text();
      } finally {
        await handle.close();
      }
    },
  };
}

import { execFile } from 'node:child_process';
import * as path from 'node:path';
import type { Logger } from '../common/logger';

// The Slurm commands tesp uses, run on the submit host: sbatch, squeue, sacct, scancel (not slurmrestd: the
// commands are on every login node, need no token, and authenticate through munge as the user tesp runs as).
// Every failure becomes an Error that names the command and quotes what it said.

export interface SlurmSubmission {
  /** The batch script Slurm runs. */
  script: string;
  /** Carries the task id, so a job can be found by it (squeue --name). */
  jobName: string;
  /** The batch script's working directory, on the shared file system. */
  cwd: string;
  /** Where Slurm writes the batch script's own stdout (and stderr, unless `error` is given). */
  output: string;
  error?: string;
  cpusPerTask?: number;
  memMb?: number;
  tmpMb?: number;
  /** A Slurm time limit: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS. */
  timeLimit?: string;
  partition?: string;
  account?: string;
  /** Extra sbatch arguments from the settings, placed before tesp's own. */
  extraArgs: readonly string[];
}

/** A job as tesp knows it: its id and the name tesp gave it. */
export interface SlurmJobRef {
  id: string;
  name: string;
}

export interface SlurmJobState {
  jobId: string;
  /** Slurm's base state: PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, PREEMPTED, ... */
  state: string;
  /** Slurm's reason (squeue %r), "None" when it gives none. */
  reason: string;
  /** The batch script's exit as "code:signal", when accounting knows it. */
  exitCode?: string;
}

export type SlurmCommand = 'sbatch' | 'squeue' | 'sacct' | 'scancel';

export interface SlurmClientSettings {
  /** How long one command may take before it counts as failed. */
  commandTimeoutMs: number;
  /** Told of every command run, for the debug log and the count of scheduler calls. */
  onCommand?: (command: SlurmCommand, args: readonly string[]) => void;
}

/** A command that exited non-zero or could not run. */
export class SlurmCommandError extends Error {
  constructor(
    readonly command: SlurmCommand,
    message: string,
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'SlurmCommandError';
  }
}

const FIELD_SEPARATOR = '|';

export class SlurmClient {
  constructor(private readonly settings: SlurmClientSettings) {}

  /** Submits the batch script; resolves to the job id. */
  async submit(job: SlurmSubmission): Promise<string> {
    const out = await this.run('sbatch', sbatchArguments(job));
    // --parsable prints "<id>" or "<id>;<cluster>".
    const jobId = out.trim().split(';')[0];
    if (!/^\d+$/.test(jobId)) throw new SlurmCommandError('sbatch', `sbatch printed no job id: ${JSON.stringify(out.slice(0, 200))}`, '');
    return jobId;
  }

  /**
   * The states of many jobs at once: one squeue for all of them (it still lists jobs that ended within MinJobAge),
   * and one sacct for those squeue no longer knows. A job counts only under its own name: ids start again at 1 when
   * a controller loses its state, and accounting keeps the old jobs. A job absent from the map is unknown to Slurm.
   */
  async states(jobs: readonly SlurmJobRef[]): Promise<Map<string, SlurmJobState>> {
    const found = new Map<string, SlurmJobState>();
    if (jobs.length === 0) return found;
    const names = new Map(jobs.map((job) => [job.id, job.name]));
    const ids = [...names.keys()].join(',');
    const queued = await this.runListing('squeue', ['-h', '-t', 'all', '-j', ids, '-o', ['%i', '%j', '%T', '%r'].join(FIELD_SEPARATOR)]);
    for (const [jobId, name, state, reason] of queued) {
      if (names.get(jobId) === name) found.set(jobId, { jobId, state: baseState(state), reason: reason ?? 'None' });
    }
    const missing = [...names.keys()].filter((id) => !found.has(id));
    if (missing.length === 0) return found;
    let accounted: string[][];
    try {
      accounted = await this.runListing('sacct', ['-n', '-X', '-P', '-j', missing.join(','), '-o', 'JobID,JobName,State,ExitCode,Reason']);
    } catch (err) {
      // Without accounting a job that left squeue is simply unknown.
      if (err instanceof SlurmCommandError && /accounting storage is disabled/i.test(err.stderr)) return found;
      throw err;
    }
    // The latest record of an id comes last.
    for (const [jobId, name, state, exitCode, reason] of accounted) {
      if (missing.includes(jobId) && names.get(jobId) === name) found.set(jobId, { jobId, state: baseState(state), reason: reason || 'None', exitCode });
    }
    return found;
  }

  /** Ids of the jobs with this name that Slurm still lists (pending, running or recently ended). */
  async jobsNamed(jobName: string): Promise<string[]> {
    const rows = await this.runListing('squeue', ['-h', '-t', 'all', '--name', jobName, '-o', '%i']);
    return rows.map(([id]) => id).filter((id) => /^\d+$/.test(id));
  }

  /** Cancels a job; a job that has ended already is no error. */
  async cancel(jobId: string): Promise<void> {
    await this.run('scancel', [jobId]);
  }

  /** Rows of `|`-separated fields; "Invalid job id" (every id listed has gone) is an empty listing. */
  private async runListing(command: 'squeue' | 'sacct', args: string[]): Promise<string[][]> {
    try {
      const out = await this.run(command, args);
      return out.split('\n').filter((line) => line.trim() !== '').map((line) => line.trim().split(FIELD_SEPARATOR));
    } catch (err) {
      if (err instanceof SlurmCommandError && /invalid job id/i.test(err.stderr)) return [];
      throw err;
    }
  }

  private run(command: SlurmCommand, args: string[]): Promise<string> {
    this.settings.onCommand?.(command, args);
    return new Promise((resolve, reject) => {
      execFile(command, args, { timeout: this.settings.commandTimeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const said = stderr.trim().slice(0, 1000);
        const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? `${command} is not installed on this host (not found on PATH)`
          : err.killed ? `${command} did not answer within ${this.settings.commandTimeoutMs} ms`
          : `${command} failed (exit ${String(err.code)})${said ? `: ${said}` : ''}`;
        reject(new SlurmCommandError(command, why, stderr));
      });
    });
  }
}

/** sbatch's arguments for a submission: settings' extras first, so tesp's own win where both set one. */
export function sbatchArguments(job: SlurmSubmission): string[] {
  const args = ['--parsable', ...job.extraArgs, `--job-name=${job.jobName}`, `--chdir=${job.cwd}`, `--output=${job.output}`, '--nodes=1', '--ntasks=1'];
  if (job.error !== undefined) args.push(`--error=${job.error}`);
  if (job.cpusPerTask !== undefined) args.push(`--cpus-per-task=${job.cpusPerTask}`);
  if (job.memMb !== undefined) args.push(`--mem=${job.memMb}M`);
  if (job.tmpMb !== undefined) args.push(`--tmp=${job.tmpMb}M`);
  if (job.timeLimit !== undefined) args.push(`--time=${job.timeLimit}`);
  if (job.partition) args.push(`--partition=${job.partition}`);
  if (job.account) args.push(`--account=${job.account}`);
  args.push(job.script);
  return args;
}

/** "CANCELLED by 0" → "CANCELLED". */
function baseState(state: string): string {
  return state.trim().split(/\s+/)[0].replace(/\+$/, '');
}

/** Each Slurm command in the debug log, numbered per kind: how the scheduler calls can be counted. */
export function slurmCommandLog(logger: Logger): SlurmClientSettings['onCommand'] {
  const counts: Record<string, number> = {};
  return (command, args) => {
    counts[command] = (counts[command] ?? 0) + 1;
    logger.debug({ slurm_command: command, count: counts[command], args: args.length }, 'slurm command');
  };
}

/** compute.slurm.work_dir, or <data_dir>/slurm. */
export function slurmWorkDir(slurm: { work_dir: string }, dataDirectory: string): string {
  return path.resolve(slurm.work_dir || path.join(dataDirectory, 'slurm'));
}

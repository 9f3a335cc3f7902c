import type { Logger } from '../common/logger';
import { errorMessage } from '../common/redact';
import type { SlurmClient, SlurmJobRef, SlurmJobState } from './slurm-client';

// Job states for every run that follows a Slurm job, read in rounds: each round asks Slurm once (SlurmClient.states:
// one squeue, and one sacct for jobs squeue no longer lists) for all the jobs waited on, however many tasks run.

export type JobLookup =
  | { kind: 'state'; state: SlurmJobState }
  /** Slurm lists the job nowhere (nor does accounting). */
  | { kind: 'unknown' }
  /** Slurm could not be asked this round; `error` says why. */
  | { kind: 'unreachable'; error: string };

interface Waiter {
  job: SlurmJobRef;
  resolve: (lookup: JobLookup) => void;
}

export class SlurmJobWatch {
  private waiters: Waiter[] = [];
  private timer?: NodeJS.Timeout;
  /** A round is asking Slurm: waiters that come meanwhile wait for the next one, which starts after it. */
  private asking = false;
  private rounds = 0;

  constructor(
    private readonly client: SlurmClient,
    private readonly pollIntervalMs: number,
    private readonly logger: Logger,
  ) {}

  /** Rounds asked so far (each one squeue, plus one sacct when needed). */
  get roundCount(): number {
    return this.rounds;
  }

  /** The job's state at the next round; resolves early (as unreachable) when `signal` aborts. */
  next(job: SlurmJobRef, signal?: AbortSignal): Promise<JobLookup> {
    if (signal?.aborted) return Promise.resolve({ kind: 'unreachable', error: 'no longer followed' });
    return new Promise((resolve) => {
      const waiter: Waiter = {
        job,
        resolve: (lookup) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(lookup);
        },
      };
      const onAbort = () => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        waiter.resolve({ kind: 'unreachable', error: 'no longer followed' });
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
      this.schedule();
    });
  }

  private schedule(): void {
    if (!this.asking && this.waiters.length > 0) this.timer ??= setTimeout(() => void this.round(), this.pollIntervalMs);
  }

  private async round(): Promise<void> {
    this.timer = undefined;
    const waiting = this.waiters;
    this.waiters = [];
    if (waiting.length === 0) return; // every waiter gave up
    this.asking = true;
    const jobs = [...new Map(waiting.map((w) => [w.job.id, w.job])).values()];
    this.rounds += 1;
    let lookups: (id: string) => JobLookup;
    try {
      const states = await this.client.states(jobs);
      lookups = (id) => {
        const state = states.get(id);
        return state ? { kind: 'state', state } : { kind: 'unknown' };
      };
      this.logger.debug({ round: this.rounds, jobs: jobs.length, known: states.size }, 'slurm job states read');
    } catch (err) {
      const error = errorMessage(err);
      this.logger.warn({ jobs: jobs.length, err: error }, 'could not read slurm job states');
      lookups = () => ({ kind: 'unreachable', error });
    }
    this.asking = false;
    for (const waiter of waiting) waiter.resolve(lookups(waiter.job.id));
    this.schedule();
  }

  /** Stops the rounds; waiters left are told Slurm was not asked. */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const waiter of this.waiters.splice(0)) waiter.resolve({ kind: 'unreachable', error: 'stopped' });
  }
}

/** How Slurm's job states stand for a run: still to come, running, or ended (and how). */
export type JobPhase = 'waiting' | 'running' | 'ended';

const WAITING = ['PENDING', 'CONFIGURING', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED', 'RESV_DEL_HOLD', 'SUSPENDED', 'STOPPED', 'RESIZING'];
const RUNNING = ['RUNNING', 'COMPLETING', 'STAGE_OUT', 'SIGNALING', 'SPECIAL_EXIT'];

export function jobPhase(state: string): JobPhase {
  if (WAITING.includes(state)) return 'waiting';
  if (RUNNING.includes(state)) return 'running';
  return 'ended';
}

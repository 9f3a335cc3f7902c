import pino from 'pino';
import type { SlurmClient, SlurmJobRef, SlurmJobState } from './slurm-client';
import { SlurmJobWatch } from './slurm-job-watch';

/** Answers states from a table and records each call's jobs (the watch's own logic, not Slurm, is under test). */
function tableClient(table: Record<string, string>, failWith?: string) {
  const calls: string[][] = [];
  const client = {
    states: async (jobs: readonly SlurmJobRef[]) => {
      calls.push(jobs.map((job) => job.id));
      if (failWith) throw new Error(failWith);
      return new Map<string, SlurmJobState>(jobs.filter((job) => table[job.id]).map((job) => [job.id, { jobId: job.id, state: table[job.id], reason: 'None' }]));
    },
  } as unknown as SlurmClient;
  return { client, calls };
}

const logger = pino({ level: 'silent' });

describe('SlurmJobWatch', () => {
  it('asks once per round for every job waited on', async () => {
    const { client, calls } = tableClient({ '1': 'RUNNING', '2': 'PENDING' });
    const watch = new SlurmJobWatch(client, 10, logger);
    const lookups = await Promise.all(['1', '2', '2', '3'].map((id) => watch.next({ id, name: `job-${id}` })));
    expect(calls).toEqual([['1', '2', '3']]);
    expect(lookups.map((l) => (l.kind === 'state' ? l.state.state : l.kind))).toEqual(['RUNNING', 'PENDING', 'PENDING', 'unknown']);
    expect(watch.roundCount).toBe(1);
    watch.stop();
  });

  it('says Slurm could not be asked, rather than that the job is unknown, when the commands fail', async () => {
    const { client } = tableClient({}, 'squeue failed (exit 1): slurm_load_jobs error: Unable to contact slurm controller');
    const watch = new SlurmJobWatch(client, 10, logger);
    expect(await watch.next({ id: '1', name: 'job-1' })).toEqual({ kind: 'unreachable', error: expect.stringContaining('Unable to contact') });
    watch.stop();
  });

  it('lets a waiter go at once when its signal aborts, without asking Slurm for it', async () => {
    const { client, calls } = tableClient({ '1': 'RUNNING' });
    const watch = new SlurmJobWatch(client, 60_000, logger);
    const stop = new AbortController();
    const pending = watch.next({ id: '1', name: 'job-1' }, stop.signal);
    stop.abort();
    expect((await pending).kind).toBe('unreachable');
    expect(calls).toEqual([]);
    watch.stop();
  });
});

import { promises as fs } from 'node:fs';
import * as path from 'node:path';

// A job's state lives in files in its directory, as Pulsar keeps it, so that a runner started again on the same
// staging directory finds every job where it was (see job-manager.ts for how each combination is recovered).

export const STATE_FILES = {
  /** The submit was accepted: "<epoch ms> <sequence>", the queue's order after a restart. */
  submitted: 'submitted',
  /** The submit's parameters, as given (without the token). */
  launchConfig: 'launch_config',
  command: 'command.sh',
  /** Stage-in done (or nothing to stage): the job may be queued. */
  preprocessed: 'preprocessed',
  /** Written just before the process is started: from then on it may exist. */
  running: 'running',
  pid: 'pid',
  /** The command's exit code, written by command.sh itself (or by the runner that saw the process exit). */
  returnCode: 'return_code',
  cancelled: 'cancelled',
  /** Stage-out done (or nothing to stage). */
  postprocessed: 'postprocessed',
  /** The runner staged the task's inputs and outputs itself (direct staging) rather than through remote_staging. */
  directStaged: 'direct_staged',
  /** Why the stage-in failed (the job never ran): shown in the status's job_stderr. */
  stageInFailure: 'stage_in_failure',
  /** The job came as a setup message: its status changes are published to the broker. */
  viaBroker: 'via_broker',
  /** The final status was published to the broker (and acknowledged, when acknowledgements are on). */
  statusPublished: 'status_published',
  /** complete | failed | cancelled: the job is over. */
  finalStatus: 'final_status',
} as const;

export type FinalStatus = 'complete' | 'failed' | 'cancelled';

export class JobState {
  constructor(readonly dir: string) {}

  path(name: string): string {
    return path.join(this.dir, name);
  }

  async has(name: string): Promise<boolean> {
    return fs.lstat(this.path(name)).then(() => true, () => false);
  }

  async read(name: string): Promise<string | undefined> {
    return fs.readFile(this.path(name), 'utf8').catch(() => undefined);
  }

  async write(name: string, content: string): Promise<void> {
    await fs.writeFile(this.path(name), content);
  }

  async finalStatus(): Promise<FinalStatus | undefined> {
    const value = (await this.read(STATE_FILES.finalStatus))?.trim();
    return value === 'complete' || value === 'failed' || value === 'cancelled' ? value : undefined;
  }

  /** The recorded exit code; null while there is none (or the file is still being written). */
  async returnCode(): Promise<number | null> {
    const text = (await this.read(STATE_FILES.returnCode))?.trim();
    return text && /^-?\d+$/.test(text) ? Number(text) : null;
  }

  async pid(): Promise<number | undefined> {
    const text = (await this.read(STATE_FILES.pid))?.trim();
    return text && /^\d+$/.test(text) ? Number(text) : undefined;
  }

  /** Submit order: [epoch ms, sequence]. */
  async submittedOrder(): Promise<[number, number]> {
    const [ms, seq] = ((await this.read(STATE_FILES.submitted)) ?? '').trim().split(/\s+/).map(Number);
    return [Number.isFinite(ms) ? ms : 0, Number.isFinite(seq) ? seq : 0];
  }
}

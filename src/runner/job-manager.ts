import { spawn } from 'node:child_process';
import { promises as fs, writeFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import * as path from 'node:path';
import type { Logger } from '../common/logger';
import { errorMessage, redactText } from '../common/redact';
import { isSafeJobId } from '../engine/job-layout';
import { isAlive, processesWithEnv, signal } from '../engine/process-runtime';
import type { ContainerSweeper } from '../engine/container-sweeper';
import type { SlurmClient } from '../engine/slurm-client';
import { renderBatchScript, slurmJobFiles, SlurmSettings } from '../engine/slurm-job';
import { jobPhase, SlurmJobWatch } from '../engine/slurm-job-watch';
import { renderCommandScript, shellQuote } from './command-script';
import { DirectStaging, readStagingRequest } from './direct-staging';
import type { StagingRequest } from '../engine/job-layout';
import { JOB_SUBDIRECTORIES, makeDirectoriesInside, openForWritingInside, relativePath, uploadPlacement } from './job-files';
import { FinalStatus, JobState, STATE_FILES } from './job-state';
import { RemoteStagingConfig, remoteStagingOf, stageInRemote, stageOutRemote } from './remote-staging';

// The jobs of one runner: queued FIFO, at most max_concurrent_jobs processes at once, each command.sh run by bash
// detached in its own session (setsid), so it outlives the runner. Every step is recorded in the job directory
// (job-state.ts); a runner started again on the same staging directory recovers each job from those files:
//
//   final_status                         over; nothing to do
//   no submitted                         set up only: 'preprocessing' until submitted (as Pulsar)
//   cancelled (no final_status)          its processes are killed, its containers removed → cancelled
//   submitted, no preprocessed           the stage-in is done again, then queued
//   preprocessed, no running             queued again, in submit order
//   running, process alive               followed again (polling /proc) until it exits
//   running, process gone, return_code   the exit is taken from return_code; stage-out (again) → complete
//   running, process gone, none          failed, returncode null: it died without saying how
//
// "Alive" means the pid is a live process whose environment carries TESP_RUNNER_JOB=<job dir>, so a pid reused by
// another process is not taken for the job; when the pid file is missing (the runner died right after the spawn),
// the job's process is found by that marker.
//
// With compute.local.runtime: slurm a job's command.sh goes to Slurm with sbatch instead (max_concurrent_jobs then
// bounds the jobs in Slurm): its Slurm job id is kept in <job>/slurm/job-id, "running" means the Slurm job has not
// ended, and after a restart the job is followed again by that id (or by its job name, tesp-runner-<job id>).

/** Every process of a job carries its job directory in this variable; grandchildren inherit it. */
export const JOB_MARKER_VARIABLE = 'TESP_RUNNER_JOB';

export type PulsarStatus = 'preprocessing' | 'queued' | 'running' | 'postprocessing' | 'complete' | 'failed' | 'cancelled' | 'lost';

type ActivePhase = 'preprocessing' | 'queued' | 'running' | 'postprocessing';

const FOLLOW_INTERVAL_MS = 250;

/** Jobs go to Slurm (compute.local.runtime: slurm) instead of running as processes of the runner's host. */
export interface SlurmLaunch {
  client: SlurmClient;
  watch: SlurmJobWatch;
  settings: SlurmSettings;
}

export interface JobManagerOptions {
  stagingDir: string;
  maxConcurrentJobs: number;
  stopTimeoutS: number;
  /** Present when direct staging is on. */
  directStaging?: DirectStaging;
  sweeper: ContainerSweeper;
  /** HOME, PATH and TMPDIR for the jobs' clean environment. */
  hostEnvironment: Record<string, string>;
  /** Present when jobs are Slurm jobs. */
  slurm?: SlurmLaunch;
  logger: Logger;
  /** How long a remote_staging transfer is retried while the other side does not answer. */
  remoteStagingRetryMs?: number;
  /** Told when a job starts running and when it ends (the AMQP face publishes status updates). */
  events?: JobEvents;
}

export interface JobEvents {
  running(id: string): void;
  ended(id: string, status: FinalStatus): void;
}

export interface SubmitRequest {
  commandLine: string;
  env: unknown[];
  /** Non-empty: set the job up first, and replace __PULSAR_JOBS_DIRECTORY__ in the command line (as Pulsar). */
  setupParams: Record<string, unknown>;
  submitExtras: Record<string, unknown>;
  /** The submit's parameters, kept as <job>/launch_config. */
  launchConfig: Record<string, unknown>;
}

/** A job id the runner refuses: it could name a directory outside the staging directory. */
export class UnsafeJobIdError extends Error {}
export class JobNotSetUpError extends Error {}

interface ActiveJob {
  id: string;
  state: JobState;
  phase: ActivePhase;
  pid?: number;
  /** Aborts the job's staging (cancel, clean). */
  abort: AbortController;
  /** The submit's remote_staging (null: none), once read. */
  remote?: RemoteStagingConfig | null;
  /** Resolves once the job has no process (any more, or never will have). */
  gone: Promise<void>;
  markGone: () => void;
  stopping?: Promise<void>;
  /** Cleaned: its directory is being removed; nothing more is written. */
  removed: boolean;
}

export class JobManager {
  private readonly active = new Map<string, ActiveJob>();
  private readonly queue: ActiveJob[] = [];
  /** Ids whose submit is being handled, so a submit sent twice at once runs once. */
  private readonly submitting = new Set<string>();
  private running = 0;
  private sequence = 0;

  constructor(private readonly options: JobManagerOptions) {}

  get activeJobs(): number {
    return this.running;
  }

  get queuedJobs(): number {
    return this.queue.length;
  }

  jobDir(id: string): string {
    if (!isSafeJobId(id)) throw new UnsafeJobIdError(`job id ${JSON.stringify(id)} is not accepted (letters, digits, _ . -; no "..")`);
    return path.join(this.options.stagingDir, id);
  }

  /** Creates the job directory and its sub-directories; doing it again changes nothing. */
  async setup(id: string): Promise<string> {
    const dir = this.jobDir(id);
    await fs.mkdir(dir, { recursive: true });
    for (const sub of JOB_SUBDIRECTORIES) await makeDirectoriesInside(dir, sub);
    return dir;
  }

  /** Accepts a job for running; a job submitted before is left alone ('ignored'), as Pulsar does. */
  async submit(id: string, request: SubmitRequest): Promise<'accepted' | 'ignored'> {
    const dir = this.jobDir(id);
    if (this.submitting.has(id) || this.active.has(id)) return 'ignored';
    this.submitting.add(id);
    try {
      const withSetup = Object.keys(request.setupParams).length > 0;
      if (withSetup) await this.setup(id);
      if (!(await isDirectory(dir))) throw new JobNotSetUpError(`job ${id} was not set up (POST /jobs?job_id=${id} first)`);
      const state = new JobState(dir);
      if ((await state.has(STATE_FILES.submitted)) || (await state.has(STATE_FILES.finalStatus))) return 'ignored';
      const commandLine = withSetup ? request.commandLine.split('__PULSAR_JOBS_DIRECTORY__').join(this.options.stagingDir) : request.commandLine;
      // Rendered first: a malformed env item is refused before anything is recorded.
      const script = renderCommandScript({ workingDir: path.join(dir, 'working'), returnCodeFile: state.path(STATE_FILES.returnCode), env: request.env, commandLine });
      await state.write(STATE_FILES.launchConfig, JSON.stringify(request.launchConfig));
      await fs.writeFile(state.path(STATE_FILES.command), script, { mode: 0o755 });
      await touchOutputs(dir, request.submitExtras.touch_outputs);
      await state.write(STATE_FILES.submitted, `${Date.now()} ${++this.sequence}\n`);
      const job = this.track(id, state);
      job.remote = remoteStagingOf(request.launchConfig) ?? null;
      this.options.logger.info({ job_id: id }, 'job submitted');
      void this.prepare(job);
      return 'accepted';
    } finally {
      this.submitting.delete(id);
    }
  }

  async status(id: string): Promise<PulsarStatus> {
    const dir = this.jobDir(id);
    if (!(await isDirectory(dir))) return 'lost';
    const state = new JobState(dir);
    const final = await state.finalStatus();
    if (final) return final;
    if (await state.has(STATE_FILES.cancelled)) return 'cancelled';
    return this.active.get(id)?.phase ?? 'preprocessing';
  }

  /** Stops a job that is not over: SIGTERM to its processes, SIGKILL after stop_timeout_s, containers removed. */
  async cancel(id: string): Promise<void> {
    const dir = this.jobDir(id);
    if (!(await isDirectory(dir))) return;
    const state = new JobState(dir);
    if (await state.finalStatus()) return;
    await state.write(STATE_FILES.cancelled, new Date().toISOString());
    this.options.logger.info({ job_id: id }, 'job cancelled');
    const job = this.active.get(id);
    if (!job) {
      await state.write(STATE_FILES.finalStatus, 'cancelled'); // set up, never submitted
      return;
    }
    job.abort.abort();
    if (job.phase === 'queued') {
      this.unqueue(job);
      await this.finish(job, 'cancelled');
    } else if (job.phase === 'running' && (job.pid !== undefined || this.options.slurm)) {
      void this.stop(job);
    }
    // Staging sees the abort; launch() stops a process that is only just starting.
  }

  /** Removes the job directory (stopping the job first); the job is 'lost' afterwards. */
  async clean(id: string): Promise<void> {
    const dir = this.jobDir(id);
    const job = this.active.get(id);
    if (job) {
      job.removed = true;
      job.abort.abort();
      this.unqueue(job);
      if (job.phase === 'running') {
        if (job.pid !== undefined || this.options.slurm) void this.stop(job);
        await job.gone;
        await job.stopping;
      }
      this.active.delete(id);
    }
    await fs.rm(dir, { recursive: true, force: true });
    this.options.logger.info({ job_id: id }, 'job cleaned');
  }

  /** Finds every job of the staging directory again after a restart (see the table at the top). */
  async recover(): Promise<void> {
    const names = await fs.readdir(this.options.stagingDir).catch(() => [] as string[]);
    const pending: Array<{ job: ActiveJob; order: [number, number] }> = [];
    for (const id of names.filter(isSafeJobId)) {
      const dir = path.join(this.options.stagingDir, id);
      if (!(await isDirectory(dir))) continue;
      const state = new JobState(dir);
      if ((await state.finalStatus()) || !(await state.has(STATE_FILES.submitted))) continue;
      pending.push({ job: this.track(id, state), order: await state.submittedOrder() });
    }
    pending.sort((a, b) => a.order[0] - b.order[0] || a.order[1] - b.order[1]);
    this.sequence = pending.reduce((max, { order }) => Math.max(max, order[1]), 0);
    for (const { job } of pending) {
      try {
        await this.resume(job);
      } catch (err) {
        this.options.logger.error({ job_id: job.id, err: errorMessage(err) }, 'could not recover a job');
        await this.finish(job, 'failed').catch(() => undefined);
      }
    }
    if (pending.length > 0) this.options.logger.info({ jobs: pending.length, running: this.running, queued: this.queue.length }, 'jobs recovered');
  }

  private async resume(job: ActiveJob): Promise<void> {
    const { state } = job;
    if (await state.has(STATE_FILES.cancelled) && this.options.slurm && (await state.has(STATE_FILES.running))) {
      job.abort.abort(); // followSlurm cancels the Slurm job
      void this.followSlurm(job);
      await this.stop(job);
      return;
    }
    if (await state.has(STATE_FILES.cancelled)) {
      const pid = await this.liveProcess(job);
      if (pid !== undefined) {
        job.pid = pid;
        job.phase = 'running';
        void this.follow(job, pid);
        await this.stop(job);
      } else {
        job.markGone();
        await this.finish(job, 'cancelled');
      }
      return;
    }
    if (!(await state.has(STATE_FILES.running))) {
      void this.prepare(job);
      return;
    }
    if (this.options.slurm) {
      void this.followSlurm(job);
      return;
    }
    const pid = await this.liveProcess(job);
    if (pid !== undefined) {
      this.options.logger.info({ job_id: job.id, pid }, 'following a job that kept running');
      void this.follow(job, pid);
      return;
    }
    job.markGone();
    void this.afterExit(job);
  }

  private track(id: string, state: JobState): ActiveJob {
    let markGone = () => undefined as void;
    const gone = new Promise<void>((resolve) => (markGone = resolve));
    const job: ActiveJob = { id, state, phase: 'preprocessing', abort: new AbortController(), gone, markGone, removed: false };
    this.active.set(id, job);
    return job;
  }

  /** Stage-in (when asked), then into the queue. */
  private async prepare(job: ActiveJob): Promise<void> {
    try {
      if (!(await job.state.has(STATE_FILES.preprocessed))) {
        job.phase = 'preprocessing';
        const failure = await this.stageIn(job);
        if (job.removed) return;
        if (await job.state.has(STATE_FILES.cancelled)) return this.finish(job, 'cancelled');
        if (failure) {
          this.options.logger.warn({ job_id: job.id, reason: redactText(failure) }, 'stage-in failed; the job does not run');
          return this.finish(job, 'failed');
        }
        await job.state.write(STATE_FILES.preprocessed, '');
      }
      if (job.removed) return;
      job.phase = 'queued';
      this.queue.push(job);
      this.dispatch();
    } catch (err) {
      this.options.logger.error({ job_id: job.id, err: errorMessage(err) }, 'could not prepare a job');
      await this.finish(job, 'failed').catch(() => undefined);
    }
  }

  private dispatch(): void {
    while (this.running < this.options.maxConcurrentJobs && this.queue.length > 0) {
      const job = this.queue.shift()!;
      this.running += 1;
      job.phase = 'running';
      void (this.options.slurm ? this.launchOnSlurm(job, this.options.slurm) : this.launch(job));
    }
  }

  /** Runs command.sh; `running` has been counted by dispatch(). */
  private async launch(job: ActiveJob): Promise<void> {
    const { state } = job;
    const dir = state.dir;
    try {
      if (job.abort.signal.aborted) throw new Error('cancelled before it started');
      await state.write(STATE_FILES.running, new Date().toISOString());
      const [stdout, stderr] = await Promise.all([fs.open(path.join(dir, 'metadata', 'job_stdout'), 'w'), fs.open(path.join(dir, 'metadata', 'job_stderr'), 'w')]);
      let exited: Promise<number>;
      try {
        const child = spawn('/bin/bash', [state.path(STATE_FILES.command)], {
          cwd: path.join(dir, 'working'),
          env: { ...this.options.hostEnvironment, LC_CTYPE: 'C.UTF-8', [JOB_MARKER_VARIABLE]: dir },
          stdio: ['ignore', stdout.fd, stderr.fd],
          detached: true, // setsid: its own session and process group, so it survives the runner
        });
        // Listened to before anything is awaited: a short command may be over by then.
        exited = new Promise<number>((resolve) => {
          child.once('error', (err: NodeJS.ErrnoException) => {
            state.write('stderr', `tesp runner: cannot run command.sh: ${err.message}\n`).catch(() => undefined);
            resolve(err.code === 'ENOENT' ? 127 : 126);
          });
          child.once('exit', (code, signalName) => resolve(code ?? 128 + (signalName ? (osConstants.signals[signalName] ?? 0) : 0)));
        });
        child.unref();
        if (child.pid !== undefined) {
          job.pid = child.pid;
          // Synchronously, so the window in which a killed runner leaves no pid behind stays tiny.
          writeFileSync(state.path(STATE_FILES.pid), `${child.pid}\n`);
          this.options.logger.info({ job_id: job.id, pid: child.pid }, 'job started');
          this.options.events?.running(job.id);
          if (job.abort.signal.aborted) void this.stop(job);
        }
      } finally {
        await Promise.all([stdout.close(), stderr.close()]);
      }
      const exitCode = await exited;
      // command.sh records its own exit code; the runner fills in when it could not (killed, or bash missing).
      if (!job.removed && (await state.returnCode()) === null) await state.write(STATE_FILES.returnCode, `${exitCode}\n`);
      if (job.pid !== undefined) signal([-job.pid], 'SIGKILL'); // what it left in the background ends with it
      this.options.logger.info({ job_id: job.id, exit_code: exitCode }, 'job process ended');
    } catch (err) {
      if (!job.abort.signal.aborted) this.options.logger.error({ job_id: job.id, err: errorMessage(err) }, 'could not start a job');
    } finally {
      job.markGone();
      this.running -= 1;
      this.dispatch();
    }
    await this.afterExit(job);
  }

  /** Follows a process another runner process started, until it exits. */
  private async follow(job: ActiveJob, pid: number): Promise<void> {
    this.running += 1;
    job.phase = 'running';
    job.pid = pid;
    try {
      while (await this.isJobProcess(pid, job.state.dir)) await sleep(FOLLOW_INTERVAL_MS);
      signal([-pid], 'SIGKILL');
    } finally {
      job.markGone();
      this.running -= 1;
      this.dispatch();
    }
    await this.afterExit(job);
  }

  /** After the process: cancelled, failed without an exit code, or stage-out (when asked) and complete. */
  private async afterExit(job: ActiveJob): Promise<void> {
    try {
      if (job.removed) return;
      if (await job.state.has(STATE_FILES.cancelled)) return this.finish(job, 'cancelled');
      if ((await job.state.returnCode()) === null) {
        this.options.logger.warn({ job_id: job.id }, 'the job process ended without an exit code');
        return this.finish(job, 'failed');
      }
      job.phase = 'postprocessing';
      if (!(await job.state.has(STATE_FILES.postprocessed))) {
        const failure = await this.stageOut(job);
        if (job.removed) return;
        if (await job.state.has(STATE_FILES.cancelled)) return this.finish(job, 'cancelled');
        if (failure) {
          this.options.logger.warn({ job_id: job.id, reason: redactText(failure) }, 'stage-out failed');
          return this.finish(job, 'failed');
        }
        await job.state.write(STATE_FILES.postprocessed, '');
      }
      await this.finish(job, 'complete');
    } catch (err) {
      this.options.logger.error({ job_id: job.id, err: errorMessage(err) }, 'could not finish a job');
      await this.finish(job, 'failed').catch(() => undefined);
    }
  }

  private async stageIn(job: ActiveJob): Promise<string | undefined> {
    const remote = await this.remoteStaging(job);
    const options = this.stageOptions(job);
    // The message items first: the direct-staging request may be one of them.
    const messages = remote ? await stageInRemote(job.state.dir, { setup: (remote.setup ?? []).filter(isMessageItem) }, options) : undefined;
    if (messages) return this.stageInFailed(job, messages);
    const direct = await this.directRequest(job, remote !== undefined);
    if (direct && 'failure' in direct) return this.stageInFailed(job, direct.failure);
    if (direct) {
      this.options.logger.info({ job_id: job.id, task_id: direct.request.taskId, inputs: direct.request.inputs.length }, 'staging inputs');
      await job.state.write(STATE_FILES.directStaged, '');
      const failure = await this.options.directStaging!.stageIn(job.state.dir, direct.request, job.abort.signal);
      if (failure) return this.stageInFailed(job, failure);
    }
    if (!remote) return undefined;
    const rest = (remote.setup ?? []).filter((item) => !isMessageItem(item));
    // Inputs the runner staged itself are not fetched again through tesp.
    const failure = await stageInRemote(job.state.dir, { setup: rest }, { ...options, skipNames: direct ? ['root/'] : [] });
    return failure ? this.stageInFailed(job, failure) : undefined;
  }

  /**
   * The direct-staging request, when the runner stages this job itself: over REST whenever tesp sent one (it asked
   * /tesp/capabilities first); with remote_staging only when this runner serves every scheme the request names.
   */
  private async directRequest(job: ActiveJob, remote: boolean): Promise<{ request: StagingRequest } | { failure: string } | undefined> {
    const staging = this.options.directStaging;
    if (!staging) return undefined;
    let request: StagingRequest | undefined;
    try {
      request = await readStagingRequest(job.state.dir);
    } catch (err) {
      const reason = errorMessage(err);
      await staging.recordStageInFailure(job.state.dir, reason);
      return { failure: reason };
    }
    if (!request) return undefined;
    if (remote) {
      const schemes = staging.schemes();
      const urls = [...request.inputs.map((i) => i.url), ...request.outputs.map((o) => o.url)];
      const servable = urls.every((url) => {
        const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase() ?? 'file';
        return scheme !== 'file' && schemes.includes(scheme);
      });
      if (!servable) {
        this.options.logger.info({ job_id: job.id }, 'not every scheme of the task is served here: staging through tesp');
        return undefined;
      }
    }
    return { request };
  }

  private async stageInFailed(job: ActiveJob, reason: string): Promise<string> {
    await job.state.write(STATE_FILES.stageInFailure, reason).catch(() => undefined);
    return reason;
  }

  private async stageOut(job: ActiveJob): Promise<string | undefined> {
    const staging = this.options.directStaging;
    const remote = await this.remoteStaging(job);
    const direct = staging && (remote ? await job.state.has(STATE_FILES.directStaged) : true) ? await readStagingRequest(job.state.dir).catch(() => undefined) : undefined;
    if (direct) {
      this.options.logger.info({ job_id: job.id, task_id: direct.taskId, outputs: direct.outputs.length }, 'staging outputs');
      const failure = await staging!.stageOut(job.state.dir, direct, job.abort.signal);
      // Over remote_staging the result (failure included) is posted with the metadata: tesp reads it from there.
      if (failure && !remote) return failure;
    }
    if (!remote) return undefined;
    return stageOutRemote(job.state.dir, remote, { ...this.stageOptions(job), skipWorking: direct !== undefined });
  }

  private async remoteStaging(job: ActiveJob): Promise<RemoteStagingConfig | undefined> {
    if (job.remote === undefined) {
      // A job recovered after a restart: its submit's parameters are in launch_config.
      const text = await job.state.read(STATE_FILES.launchConfig);
      try {
        job.remote = (text ? remoteStagingOf(JSON.parse(text) as Record<string, unknown>) : undefined) ?? null;
      } catch {
        job.remote = null;
      }
    }
    return job.remote ?? undefined;
  }

  private stageOptions(job: ActiveJob) {
    return {
      signal: job.abort.signal,
      retryMs: this.options.remoteStagingRetryMs ?? 60_000,
      log: (line: string) => this.options.logger.warn({ job_id: job.id }, line),
    };
  }

  /** SIGTERM to the job's process group and every process carrying its marker; SIGKILL after stop_timeout_s. */
  private stop(job: ActiveJob): Promise<void> {
    if (this.options.slurm) return (job.stopping ??= this.stopOnSlurm(job));
    job.stopping ??= (async () => {
      const marker = `${JOB_MARKER_VARIABLE}=${job.state.dir}`;
      const targets = async () => [...(job.pid !== undefined ? [-job.pid] : []), ...(await processesWithEnv(marker))];
      signal(await targets(), 'SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([job.gone, new Promise<void>((resolve) => (timer = setTimeout(resolve, this.options.stopTimeoutS * 1000)))]);
      clearTimeout(timer);
      // Also after a clean exit on SIGTERM: what the job started elsewhere ends with it.
      signal(await targets(), 'SIGKILL');
      await job.gone;
      await this.options.sweeper.removeContainersOf(job.id);
    })();
    return job.stopping;
  }

  /**
   * Submits command.sh as a Slurm job (its batch script sets the clean environment a process of the runner would
   * get), records its id, and follows it until Slurm says it ended; `running` has been counted by dispatch().
   */
  private async launchOnSlurm(job: ActiveJob, slurm: SlurmLaunch): Promise<void> {
    const { state } = job;
    const files = slurmJobFiles(state.dir);
    try {
      if (job.abort.signal.aborted) throw new Error('cancelled before it started');
      await fs.mkdir(files.dir, { recursive: true });
      // The job gets the clean environment a process of the runner would get, whatever sbatch passes on.
      const env = { ...this.options.hostEnvironment, LC_CTYPE: 'C.UTF-8', [JOB_MARKER_VARIABLE]: state.dir };
      const command = ['env', '-i', ...Object.entries(env).map(([name, value]) => shellQuote(`${name}=${value}`)), '/bin/bash', shellQuote(state.path(STATE_FILES.command))].join(' ');
      await fs.writeFile(files.batchScript, renderBatchScript(files, command), { mode: 0o755 });
      await state.write(STATE_FILES.running, new Date().toISOString());
      const slurmJobId = await slurm.client.submit({
        script: files.batchScript,
        jobName: runnerJobName(job.id),
        cwd: path.join(state.dir, 'working'),
        output: path.join(state.dir, 'metadata', 'job_stdout'),
        error: path.join(state.dir, 'metadata', 'job_stderr'),
        extraArgs: slurm.settings.sbatchArgs,
        partition: slurm.settings.partition || undefined,
        account: slurm.settings.account || undefined,
      });
      await fs.writeFile(files.jobIdFile, `${slurmJobId}\n`);
      this.options.logger.info({ job_id: job.id, slurm_job_id: slurmJobId }, 'job submitted to slurm');
      this.options.events?.running(job.id);
    } catch (err) {
      if (!job.abort.signal.aborted) this.options.logger.error({ job_id: job.id, err: errorMessage(err) }, 'could not submit a job to slurm');
      await fs.appendFile(path.join(state.dir, 'metadata', 'job_stderr'), `tesp runner: sbatch failed: ${errorMessage(err)}\n`).catch(() => undefined);
      job.markGone();
      this.running -= 1;
      this.dispatch();
      return this.afterExit(job);
    }
    this.running -= 1;
    return this.followSlurm(job);
  }

  /**
   * Follows a job's Slurm job until it ended; a cancel (the job's abort) is passed on with scancel, and an end without
   * an exit code is recorded on its stderr.
   */
  private async followSlurm(job: ActiveJob): Promise<void> {
    const slurm = this.options.slurm!;
    this.running += 1;
    job.phase = 'running';
    try {
      const recorded = (await fs.readFile(slurmJobFiles(job.state.dir).jobIdFile, 'utf8').catch(() => '')).trim();
      // A runner killed between sbatch and writing the id down finds the job by its name.
      const slurmJobId = /^\d+$/.test(recorded) ? recorded : ((await slurm.client.jobsNamed(runnerJobName(job.id)).catch(() => [])).at(-1) ?? '');
      let ended = 'it was never submitted';
      let cancelSent = false;
      while (/^\d+$/.test(slurmJobId)) {
        if (job.abort.signal.aborted && !cancelSent) {
          cancelSent = true;
          await slurm.client.cancel(slurmJobId).catch((err: unknown) => this.options.logger.warn({ job_id: job.id, err: errorMessage(err) }, 'scancel failed'));
        }
        const lookup = await slurm.watch.next({ id: slurmJobId, name: runnerJobName(job.id) });
        if (lookup.kind === 'unreachable') continue;
        if (lookup.kind === 'unknown') {
          ended = `Slurm no longer knows job ${slurmJobId}`;
          break;
        }
        if (jobPhase(lookup.state.state) === 'ended') {
          ended = `Slurm job ${slurmJobId} ended ${lookup.state.state} (${lookup.state.reason}${lookup.state.exitCode ? `, exit ${lookup.state.exitCode}` : ''})`;
          break;
        }
      }
      if (!job.removed && (await job.state.returnCode()) === null) {
        await fs.appendFile(path.join(job.state.dir, 'metadata', 'job_stderr'), `tesp runner: ${ended}, without an exit code\n`).catch(() => undefined);
      }
      this.options.logger.info({ job_id: job.id, slurm_job_id: slurmJobId, ended }, 'slurm job ended');
    } finally {
      job.markGone();
      this.running -= 1;
      this.dispatch();
    }
    await this.afterExit(job);
  }

  /** followSlurm passes the cancel on (Slurm signals the job, whose script removes its containers); then the sweep. */
  private async stopOnSlurm(job: ActiveJob): Promise<void> {
    job.abort.abort();
    await job.gone;
    await this.options.sweeper.removeContainersOf(job.id);
  }

  /** The job's live process after a restart: its pid file's, or the group leader carrying its marker. */
  private async liveProcess(job: ActiveJob): Promise<number | undefined> {
    const dir = job.state.dir;
    const pid = await job.state.pid();
    if (pid !== undefined && (await this.isJobProcess(pid, dir))) return pid;
    for (const candidate of await processesWithEnv(`${JOB_MARKER_VARIABLE}=${dir}`)) {
      if ((await processGroupOf(candidate)) === candidate) {
        await job.state.write(STATE_FILES.pid, `${candidate}\n`);
        return candidate;
      }
    }
    return undefined;
  }

  private async isJobProcess(pid: number, dir: string): Promise<boolean> {
    if (!(await isAlive(pid))) return false;
    const environ = await fs.readFile(`/proc/${pid}/environ`).catch(() => undefined);
    return environ !== undefined && environ.toString('utf8').split('\0').includes(`${JOB_MARKER_VARIABLE}=${dir}`);
  }

  private unqueue(job: ActiveJob): void {
    const index = this.queue.indexOf(job);
    if (index >= 0) this.queue.splice(index, 1);
  }

  private async finish(job: ActiveJob, status: FinalStatus): Promise<void> {
    if (job.removed) return;
    await job.state.write(STATE_FILES.finalStatus, status);
    this.active.delete(job.id);
    this.options.logger.info({ job_id: job.id, status, returncode: await job.state.returnCode() }, 'job ended');
    this.options.events?.ended(job.id, status);
  }
}

function isMessageItem(item: unknown): boolean {
  return (item as { action?: { action_type?: unknown } } | undefined)?.action?.action_type === 'message';
}

/** The Slurm job name of a runner's job: the Pulsar job id carries the task id and attempt. */
export function runnerJobName(jobId: string): string {
  return `tesp-runner-${jobId}`;
}

/** Galaxy's submit_extras.touch_outputs: empty files in outputs/ before the job runs. */
async function touchOutputs(dir: string, names: unknown): Promise<void> {
  if (!Array.isArray(names)) return;
  for (const name of names) {
    if (typeof name !== 'string') continue;
    const handle = await openForWritingInside(dir, relativePath(uploadPlacement('output'), name));
    await handle.close();
  }
}

/** The process group of a process (field 5 of /proc/<pid>/stat, after the command name in parentheses). */
async function processGroupOf(pid: number): Promise<number | undefined> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  const fields = stat?.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields ? Number(fields[2]) : undefined;
}

async function isDirectory(dir: string): Promise<boolean> {
  return fs.lstat(dir).then((stats) => stats.isDirectory(), () => false);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

import * as path from 'node:path';
import type { TesResources } from '../domain/tes-task';
import { MAX_TIME, parameterValue, SLURM_ACCOUNT, SLURM_PARTITION, WALLTIME } from './backend-parameters';
import { shellQuote } from './job-script';
import type { SlurmSubmission } from './slurm-client';

// What a task's Slurm job is made of, for the local backend's slurm runtime and for `tesp runner` on Slurm: the
// batch script (a short wrapper that marks its own start, then runs the job), the files Slurm and tesp keep beside
// the job directory, and sbatch's options from the task's resources and the settings.

export interface SlurmSettings {
  partition: string;
  account: string;
  sbatchArgs: readonly string[];
}

/** The files of a Slurm job, in `<dir>/slurm/` beside the Pulsar-style job directory (inputs/ working/ metadata/). */
export interface SlurmJobFiles {
  dir: string;
  /** What sbatch gets. */
  batchScript: string;
  /** The batch script's own stdout and stderr (sbatch --output). */
  output: string;
  /** Written by the batch script as its first act: the job's process exists. */
  launched: string;
  /** The Slurm job id, written once sbatch answered. */
  jobIdFile: string;
}

export function slurmJobFiles(jobDir: string): SlurmJobFiles {
  const dir = path.join(jobDir, 'slurm');
  return { dir, batchScript: path.join(dir, 'batch.sh'), output: path.join(dir, 'output'), launched: path.join(dir, 'launched'), jobIdFile: path.join(dir, 'job-id') };
}

/** The Slurm job name of a task's attempt: how its job is found again when its id was never recorded. */
export function slurmJobName(taskId: string, attempt: number): string {
  return `tesp-${taskId}-${attempt}`;
}

/**
 * The batch script: Slurm copies it to the node and runs it from --chdir. It marks its start (a job that Slurm shows
 * RUNNING without this mark never got a process), then execs `command` so signals reach the job itself.
 */
export function renderBatchScript(files: SlurmJobFiles, command: string): string {
  return [
    '#!/bin/bash',
    '# Rendered by tesp (src/engine/slurm-job.ts): a TES task as a Slurm job.',
    `printf '%s %s\\n' "$(hostname)" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >${shellQuote(files.launched)} || exit 1`,
    `exec ${command}`,
    '',
  ].join('\n');
}

/** sbatch options of a task: its resources, its backend_parameters (time limit, partition, account), the settings. */
export function taskSubmission(resources: TesResources | undefined, settings: SlurmSettings): Pick<SlurmSubmission, 'cpusPerTask' | 'memMb' | 'tmpMb' | 'timeLimit' | 'partition' | 'account' | 'extraArgs'> {
  const params = resources?.backend_parameters;
  const mib = (gb: number | undefined) => (gb !== undefined && gb > 0 ? Math.ceil(gb * 1024) : undefined);
  return {
    cpusPerTask: resources?.cpu_cores !== undefined && resources.cpu_cores > 0 ? Math.ceil(resources.cpu_cores) : undefined,
    memMb: mib(resources?.ram_gb),
    tmpMb: mib(resources?.disk_gb),
    timeLimit: parameterValue(params, MAX_TIME) ?? parameterValue(params, WALLTIME),
    partition: parameterValue(params, SLURM_PARTITION) ?? (settings.partition || undefined),
    account: parameterValue(params, SLURM_ACCOUNT) ?? (settings.account || undefined),
    extraArgs: settings.sbatchArgs,
  };
}

// backend_parameters keys a compute backend understands. A backend lists the ones it supports (the compute
// port's `backendParameters`): task creation validates them from this declaration, the execution plan reads
// them through it, and service-info lists the keys.

export interface BackendParameter {
  /** Lower case; clients' keys are compared case-insensitively and stored in lower case. */
  readonly key: string;
  readonly description: string;
  /** Why `value` cannot be used, or undefined when it can. */
  problem(value: string): string | undefined;
}

export const SHM_SIZE_GB: BackendParameter = {
  key: 'shm_size_gb',
  description: "size of the container's /dev/shm, GiB",
  problem: (value) => (Number(value) > 0 && Number.isFinite(Number(value)) ? undefined : `must be a positive number of GiB, got "${value}"`),
};

/** The value of `parameter` in a task's backend_parameters, if it is given and usable. */
export function parameterValue(params: Readonly<Record<string, string>> | undefined, parameter: BackendParameter): string | undefined {
  const value = params?.[parameter.key];
  return value !== undefined && parameter.problem(value) === undefined ? value : undefined;
}

/** A Slurm time limit as sbatch takes it: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS. */
export function slurmTimeProblem(value: string): string | undefined {
  const ok = /^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d{1,2}|\d+-\d{1,2}:\d{1,2}|\d+-\d{1,2}:\d{1,2}:\d{1,2})$/.test(value) && !/^0+$/.test(value);
  return ok ? undefined : `must be a Slurm time limit (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS), got "${value}"`;
}

const slurmNameProblem = (what: string) => (value: string) =>
  /^[A-Za-z0-9_.+-]{1,128}$/.test(value) ? undefined : `must be a Slurm ${what} name (letters, digits, _ . + -), got "${value}"`;

export const MAX_TIME: BackendParameter = { key: 'max_time', description: 'the Slurm job time limit (sbatch --time)', problem: slurmTimeProblem };
/** The same as max_time, under the name PBS and Funnel users know. */
export const WALLTIME: BackendParameter = { key: 'walltime', description: 'the Slurm job time limit (sbatch --time); max_time wins', problem: slurmTimeProblem };
export const SLURM_PARTITION: BackendParameter = { key: 'partition', description: 'the Slurm partition (sbatch --partition)', problem: slurmNameProblem('partition') };
export const SLURM_ACCOUNT: BackendParameter = { key: 'account', description: 'the Slurm account charged (sbatch --account)', problem: slurmNameProblem('account') };

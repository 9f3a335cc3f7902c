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

import type Docker from 'dockerode';
import { ExecutionPlan, hostPath, PlanExecutor, TaskLayout } from './execution-plan';
import { executorName } from './executor-runtime';

// The plan-to-Docker mapping, as a pure function: what `docker create` gets for one executor.

export const TASK_LABEL = 'tesp.task';
export const EXECUTOR_LABEL = 'tesp.executor';

export interface DockerOptionSettings {
  /** Give containers the default network; otherwise they run with --network none. */
  allowNetwork: boolean;
  /**
   * The user the executor runs as (executorUser()), with every capability dropped; undefined: the image's own
   * user, root included, with Docker's default capabilities (compute.local.run_as_root).
   */
  user?: string;
}

/** The user the root of a container maps to when an image names none of its own: nobody. */
export const NOBODY = '65534:65534';

/** A USER of an image that is root (empty means root). */
export function isRootUser(user: string | undefined): boolean {
  const name = (user ?? '').split(':')[0].trim();
  return name === '' || name === '0' || name === 'root';
}

/**
 * Who runs an executor: the image's own USER when it is not root, else `fallback` (compute.local.executor_user;
 * empty: tesp's own uid:gid when tesp is not root, so it can clean up what executors write, else nobody).
 */
export function executorUser(imageUser: string | undefined, fallback: string, ownIds?: { uid: number; gid: number }): string {
  if (!isRootUser(imageUser)) return imageUser!.trim();
  if (fallback) return fallback;
  return ownIds && ownIds.uid !== 0 ? `${ownIds.uid}:${ownIds.gid}` : NOBODY;
}

export function dockerOptions(plan: ExecutionPlan, executor: PlanExecutor, layout: TaskLayout, settings: DockerOptionSettings): Docker.ContainerCreateOptions {
  const withStdin = executor.stdin !== undefined;
  const { cpuCores, ramBytes, shmBytes } = plan.limits;
  return {
    name: executorName(plan.taskId, executor.index),
    Image: executor.image,
    Cmd: executor.command,
    WorkingDir: executor.workdir,
    Env: Object.entries(executor.env).map(([k, v]) => `${k}=${v}`),
    Labels: { [TASK_LABEL]: plan.taskId, [EXECUTOR_LABEL]: String(executor.index) },
    ...(settings.user !== undefined ? { User: settings.user } : {}),
    Tty: false,
    AttachStdin: withStdin,
    OpenStdin: withStdin,
    StdinOnce: withStdin,
    AttachStdout: true,
    AttachStderr: true,
    HostConfig: {
      Binds: plan.mounts.map((m) => `${hostPath(layout.rootDir, m.path)}:${m.path}${m.readOnly ? ':ro' : ''}`),
      NetworkMode: settings.allowNetwork ? 'default' : 'none',
      NanoCpus: cpuCores ? Math.round(cpuCores * 1e9) : undefined,
      Memory: ramBytes,
      // Swap equal to memory: the RAM limit is not stretched by swapping.
      MemorySwap: ramBytes,
      ShmSize: shmBytes,
      // No privilege gains (setuid binaries, file capabilities), and a non-root executor holds no capability.
      SecurityOpt: ['no-new-privileges'],
      ...(settings.user !== undefined ? { CapDrop: ['ALL'] } : {}),
      // Containers stay until their task ends, so another run can adopt them or read their exit codes.
      AutoRemove: false,
    },
  };
}

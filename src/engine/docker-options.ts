import type Docker from 'dockerode';
import { ExecutionPlan, hostPath, PlanExecutor, TaskLayout } from './execution-plan';
import { executorName } from './executor-runtime';

// The plan-to-Docker mapping, as a pure function: what `docker create` gets for one executor.

export const TASK_LABEL = 'tesp.task';
export const EXECUTOR_LABEL = 'tesp.executor';

export interface DockerOptionSettings {
  /** Give containers the default network; otherwise they run with --network none. */
  allowNetwork: boolean;
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
      // Containers stay until their task ends, so another run can adopt them or read their exit codes.
      AutoRemove: false,
    },
  };
}

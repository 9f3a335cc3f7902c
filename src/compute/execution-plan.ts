import * as path from 'node:path';
import type { FileType, TaskRecord } from '../tasks/tes-task';

// "What to run": a task turned into host directories, mounts and executor steps, independent of how they run.
// The local backend runs it with Docker or plain processes; the Pulsar backends will render it as a script.
//
// Layout: every container path P maps to the host path <taskDir>/root/P. Volumes, the parent directory of each
// output (the directory itself for DIRECTORY outputs, the path prefix for globs) and the parents of
// stdin/stdout/stderr files are mounted read-write; inputs are mounted read-only at their own paths on top.

export interface PlanMount {
  hostPath: string;
  containerPath: string;
  readOnly: boolean;
  type: FileType;
}

export interface PlanInput {
  index: number;
  url?: string;
  content?: string;
  type: FileType;
  containerPath: string;
  hostPath: string;
}

export interface PlanOutput {
  index: number;
  url: string;
  type: FileType;
  containerPath: string;
  /** For a glob: the host pattern; matches are uploaded to url + (match relative to hostPrefix). */
  glob?: { hostPattern: string; hostPrefix: string; containerPrefix: string };
  /** Host path of the file or directory (for a glob, of its prefix directory). */
  hostPath: string;
}

export interface PlanExecutor {
  index: number;
  image: string;
  command: string[];
  workdir?: string;
  env: Record<string, string>;
  /** Host files backing the executor's stdin/stdout/stderr, when the task names them. */
  stdinHostPath?: string;
  stdoutHostPath?: string;
  stderrHostPath?: string;
  ignoreError: boolean;
}

export interface PlanLimits {
  cpuCores?: number;
  ramBytes?: number;
  shmBytes?: number;
}

export interface ExecutionPlan {
  taskId: string;
  taskDir: string;
  rootDir: string;
  mounts: PlanMount[];
  inputs: PlanInput[];
  outputs: PlanOutput[];
  executors: PlanExecutor[];
  limits: PlanLimits;
}

const GLOB_CHARS = /[*?[\]{}]/;

export function isGlob(p: string): boolean {
  return GLOB_CHARS.test(p);
}

/** The host path for a container path (which validation has made absolute and free of '..'). */
export function hostPathFor(rootDir: string, containerPath: string): string {
  const normalized = path.posix.normalize(containerPath);
  if (!normalized.startsWith('/') || normalized.split('/').includes('..')) {
    throw new Error(`container path "${containerPath}" must be absolute without ".."`);
  }
  return path.join(rootDir, normalized);
}

export function buildExecutionPlan(task: TaskRecord, taskDir: string): ExecutionPlan {
  const rootDir = path.join(taskDir, 'root');
  const host = (p: string) => hostPathFor(rootDir, p);
  const writableDirs = new Set<string>();
  const addWritable = (containerDir: string) => {
    const dir = path.posix.normalize(containerDir).replace(/\/+$/, '') || '/';
    if (dir !== '/') writableDirs.add(dir);
  };

  for (const volume of task.volumes ?? []) addWritable(volume);

  const outputs: PlanOutput[] = (task.outputs ?? []).map((output, index) => {
    const containerPath = path.posix.normalize(output.path).replace(/(.)\/+$/, '$1');
    if (isGlob(containerPath)) {
      const containerPrefix = path.posix.normalize(output.path_prefix ?? staticPrefix(containerPath)).replace(/(.)\/+$/, '$1');
      addWritable(staticPrefix(containerPath));
      return {
        index,
        url: output.url,
        type: output.type,
        containerPath,
        hostPath: host(containerPrefix),
        glob: { hostPattern: host(containerPath), hostPrefix: host(containerPrefix), containerPrefix },
      };
    }
    addWritable(output.type === 'DIRECTORY' ? containerPath : path.posix.dirname(containerPath));
    return { index, url: output.url, type: output.type, containerPath, hostPath: host(containerPath) };
  });

  const inputPaths = new Set((task.inputs ?? []).map((i) => path.posix.normalize(i.path)));
  const executors: PlanExecutor[] = task.executors.map((executor, index) => {
    for (const stream of [executor.stdout, executor.stderr]) if (stream) addWritable(path.posix.dirname(stream));
    if (executor.stdin && !inputPaths.has(path.posix.normalize(executor.stdin))) addWritable(path.posix.dirname(executor.stdin));
    return {
      index,
      image: executor.image,
      command: executor.command,
      workdir: executor.workdir,
      env: executor.env ?? {},
      stdinHostPath: executor.stdin ? host(executor.stdin) : undefined,
      stdoutHostPath: executor.stdout ? host(executor.stdout) : undefined,
      stderrHostPath: executor.stderr ? host(executor.stderr) : undefined,
      ignoreError: executor.ignore_error === true,
    };
  });

  // A writable directory inside another one is already covered by the outer mount.
  const roots = [...writableDirs].sort().filter((dir, _, all) => !all.some((other) => other !== dir && isInside(dir, other)));
  const mounts: PlanMount[] = roots.map((dir) => ({ hostPath: host(dir), containerPath: dir, readOnly: false, type: 'DIRECTORY' }));

  const inputs: PlanInput[] = (task.inputs ?? []).map((input, index) => {
    const containerPath = path.posix.normalize(input.path).replace(/(.)\/+$/, '$1');
    mounts.push({ hostPath: host(containerPath), containerPath, readOnly: true, type: input.type });
    return { index, url: input.url, content: input.content, type: input.type, containerPath, hostPath: host(containerPath) };
  });

  const resources = task.resources ?? {};
  const shmGb = Number(resources.backend_parameters?.shm_size_gb);
  return {
    taskId: task.id,
    taskDir,
    rootDir,
    mounts,
    inputs,
    outputs,
    executors,
    limits: {
      cpuCores: resources.cpu_cores,
      ramBytes: resources.ram_gb !== undefined ? Math.round(resources.ram_gb * 1024 ** 3) : undefined,
      shmBytes: Number.isFinite(shmGb) && shmGb > 0 ? Math.round(shmGb * 1024 ** 3) : undefined,
    },
  };
}

/** The directory part of a glob before its first wildcard segment. */
export function staticPrefix(pattern: string): string {
  const segments = pattern.split('/');
  const firstWild = segments.findIndex((s) => isGlob(s));
  const stable = firstWild === -1 ? segments.slice(0, -1) : segments.slice(0, firstWild);
  return stable.join('/') || '/';
}

export function isInside(child: string, parent: string): boolean {
  return parent === '/' ? child.startsWith('/') : child === parent || child.startsWith(parent + '/');
}

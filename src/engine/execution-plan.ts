import * as path from 'node:path';
import type { FileType, TaskRecord } from '../domain/tes-task';
import { parameterValue, SHM_SIZE_GB } from './backend-parameters';

// "What to run": a task turned into mounts, transfers and executor steps, independent of the host and of how it
// runs. Every path in a plan is a container path. Whoever runs the plan gives the task a root directory (the local
// backend: data_dir/work/<id>/root; a runner: its job directory) and each container path P lives at <root>/P
// (hostPath below). The local backend runs a plan with Docker or plain processes (dockerOptions(plan) is the
// Docker mapping); runners will render it as a script.
//
// Mounts: volumes, the parent directory of each output (the directory itself for DIRECTORY outputs, the static
// prefix for globs) and the parents of stdout/stderr files (and of a stdin file no input provides) are mounted
// read-write; inputs are mounted read-only at their own paths on top.

export interface PlanMount {
  path: string;
  readOnly: boolean;
  type: FileType;
}

export interface PlanInput {
  index: number;
  url?: string;
  content?: string;
  type: FileType;
  path: string;
}

export interface PlanOutput {
  index: number;
  url: string;
  type: FileType;
  /** The output's path; for a glob, the pattern. */
  path: string;
  /** For a glob: matches are uploaded to url + (match relative to prefix). */
  glob?: { prefix: string };
}

export interface PlanExecutor {
  index: number;
  image: string;
  command: string[];
  workdir?: string;
  env: Record<string, string>;
  stdin?: string;
  stdout?: string;
  stderr?: string;
  ignoreError: boolean;
}

export interface PlanLimits {
  cpuCores?: number;
  ramBytes?: number;
  shmBytes?: number;
}

export interface ExecutionPlan {
  taskId: string;
  mounts: PlanMount[];
  inputs: PlanInput[];
  outputs: PlanOutput[];
  executors: PlanExecutor[];
  limits: PlanLimits;
}

/** Where a plan runs on a host: the task's own directory and, inside it, the root its container paths live under. */
export interface TaskLayout {
  taskDir: string;
  rootDir: string;
}

export function taskLayout(taskDir: string): TaskLayout {
  return { taskDir, rootDir: path.join(taskDir, 'root') };
}

const GLOB_CHARS = /[*?[\]{}]/;

export function isGlob(p: string): boolean {
  return GLOB_CHARS.test(p);
}

/** The host path of a container path (which validation has made absolute and free of '..'). */
export function hostPath(rootDir: string, containerPath: string): string {
  const normalized = path.posix.normalize(containerPath);
  if (!normalized.startsWith('/') || normalized.split('/').includes('..')) {
    throw new Error(`container path "${containerPath}" must be absolute without ".."`);
  }
  return path.join(rootDir, normalized);
}

/** A container path without a trailing slash ('/' stays '/'). */
function clean(p: string): string {
  return path.posix.normalize(p).replace(/(.)\/+$/, '$1');
}

export function buildExecutionPlan(task: TaskRecord): ExecutionPlan {
  const writableDirs = new Set<string>();
  const addWritable = (containerDir: string) => {
    const dir = clean(containerDir);
    if (dir !== '/') writableDirs.add(dir);
  };

  for (const volume of task.volumes ?? []) addWritable(volume);

  const outputs: PlanOutput[] = (task.outputs ?? []).map((output, index) => {
    const outputPath = clean(output.path);
    if (isGlob(outputPath)) {
      addWritable(staticPrefix(outputPath));
      return { index, url: output.url, type: output.type, path: outputPath, glob: { prefix: clean(output.path_prefix ?? staticPrefix(outputPath)) } };
    }
    addWritable(output.type === 'DIRECTORY' ? outputPath : path.posix.dirname(outputPath));
    return { index, url: output.url, type: output.type, path: outputPath };
  });

  const inputPaths = new Set((task.inputs ?? []).map((i) => clean(i.path)));
  const executors: PlanExecutor[] = task.executors.map((executor, index) => {
    for (const stream of [executor.stdout, executor.stderr]) if (stream) addWritable(path.posix.dirname(stream));
    if (executor.stdin && !inputPaths.has(clean(executor.stdin))) addWritable(path.posix.dirname(executor.stdin));
    return {
      index,
      image: executor.image,
      command: executor.command,
      workdir: executor.workdir,
      env: executor.env ?? {},
      stdin: executor.stdin && clean(executor.stdin),
      stdout: executor.stdout && clean(executor.stdout),
      stderr: executor.stderr && clean(executor.stderr),
      ignoreError: executor.ignore_error === true,
    };
  });

  // A writable directory inside another one is already covered by the outer mount.
  const roots = [...writableDirs].sort().filter((dir, _, all) => !all.some((other) => other !== dir && isInside(dir, other)));
  const mounts: PlanMount[] = roots.map((dir) => ({ path: dir, readOnly: false, type: 'DIRECTORY' }));

  const inputs: PlanInput[] = (task.inputs ?? []).map((input, index) => {
    const inputPath = clean(input.path);
    mounts.push({ path: inputPath, readOnly: true, type: input.type });
    return { index, url: input.url, content: input.content, type: input.type, path: inputPath };
  });

  const resources = task.resources ?? {};
  const shmGb = parameterValue(resources.backend_parameters, SHM_SIZE_GB);
  return {
    taskId: task.id,
    mounts,
    inputs,
    outputs,
    executors: executors.map(stripUndefined),
    limits: {
      cpuCores: resources.cpu_cores,
      ramBytes: resources.ram_gb !== undefined ? Math.round(resources.ram_gb * 1024 ** 3) : undefined,
      shmBytes: shmGb !== undefined ? Math.round(Number(shmGb) * 1024 ** 3) : undefined,
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

function stripUndefined<T extends object>(value: T): T {
  for (const key of Object.keys(value) as Array<keyof T>) if (value[key] === undefined) delete value[key];
  return value;
}

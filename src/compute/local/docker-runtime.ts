import Docker from 'dockerode';
import { createReadStream } from 'node:fs';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { DomainError, ErrorCode } from '../../common/domain-error';
import type { ExecutionPlan, PlanExecutor } from '../execution-plan';
import type { ExecutorOutput } from './executor-output';
import { ExecutorExit, ExecutorRuntime, executorName, LeftoverExecutor, RunningExecutor } from './executor-runtime';

export interface DockerRuntimeSettings {
  docker_socket: string;
  allow_network: boolean;
  pull_images: boolean;
}

const TASK_LABEL = 'tesp.task';
const EXECUTOR_LABEL = 'tesp.executor';

/** Runs executors as Docker containers. Containers stay until their task ends, so a restarted tesp can adopt them. */
export class DockerRuntime implements ExecutorRuntime {
  readonly kind = 'docker' as const;
  readonly survivesRestart = true;
  private readonly docker: Docker;

  constructor(private readonly settings: DockerRuntimeSettings) {
    this.docker = new Docker({ socketPath: settings.docker_socket });
  }

  async start(plan: ExecutionPlan, executor: PlanExecutor, output: ExecutorOutput): Promise<RunningExecutor> {
    await this.ensureImage(executor.image);
    const withStdin = executor.stdinHostPath !== undefined;
    if (executor.workdir) await fs.mkdir(path.join(plan.rootDir, executor.workdir), { recursive: true }).catch(() => undefined);
    // A container of this name that never started (a previous process died between create and start) goes first.
    await this.docker
      .getContainer(executorName(plan.taskId, executor.index))
      .remove({ force: true })
      .catch(() => undefined);
    const container = await this.docker
      .createContainer({
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
          Binds: plan.mounts.map((m) => `${m.hostPath}:${m.containerPath}${m.readOnly ? ':ro' : ''}`),
          NetworkMode: this.settings.allow_network ? 'default' : 'none',
          NanoCpus: plan.limits.cpuCores ? Math.round(plan.limits.cpuCores * 1e9) : undefined,
          Memory: plan.limits.ramBytes,
          MemorySwap: plan.limits.ramBytes,
          ShmSize: plan.limits.shmBytes,
          AutoRemove: false,
        },
      })
      .catch((err: unknown) => {
        throw dockerError(`could not create the container for executors[${executor.index}] (${executor.image})`, err);
      });
    const stream = await container.attach({ stream: true, stdin: withStdin, stdout: true, stderr: true, hijack: withStdin });
    const drained = new Promise<void>((resolve) => {
      stream.on('end', resolve);
      stream.on('close', resolve);
      stream.on('error', () => resolve());
    });
    container.modem.demuxStream(stream, output.stdout, output.stderr);
    const startTime = new Date().toISOString();
    try {
      await container.start();
    } catch (err) {
      const message = (err as Error).message ?? String(err);
      // Like `docker run`, a command that cannot be executed is the executor's failure (exit 127), not tesp's.
      if (/executable file not found|no such file or directory|permission denied/i.test(message)) {
        output.stderr.write(Buffer.from(`tesp: cannot execute ${JSON.stringify(executor.command[0])}: ${cleanDockerMessage(message)}\n`));
        return { startTime, exited: Promise.resolve({ exitCode: 127, startTime, endTime: new Date().toISOString() }) };
      }
      throw dockerError(`could not start executors[${executor.index}] (${executor.image})`, err);
    }
    if (withStdin) {
      const input = createReadStream(executor.stdinHostPath!);
      input.on('error', () => stream.end());
      input.pipe(stream);
    }
    return { startTime, exited: this.exitOf(container, drained) };
  }

  async leftovers(taskId: string): Promise<LeftoverExecutor[]> {
    const containers = await this.docker.listContainers({ all: true, filters: { label: [`${TASK_LABEL}=${taskId}`] } });
    return containers
      .map((c) => ({ index: Number(c.Labels[EXECUTOR_LABEL]), running: c.State === 'running', started: c.State !== 'created' }))
      .filter((c) => Number.isInteger(c.index))
      .sort((a, b) => a.index - b.index);
  }

  async adopt(taskId: string, index: number, output: ExecutorOutput): Promise<RunningExecutor> {
    const container = this.docker.getContainer(executorName(taskId, index));
    const info = await container.inspect();
    const stream = (await container.logs({ follow: true, stdout: true, stderr: true })) as unknown as NodeJS.ReadableStream;
    const drained = new Promise<void>((resolve) => {
      stream.on('end', resolve);
      stream.on('close', resolve);
      stream.on('error', () => resolve());
    });
    container.modem.demuxStream(stream, output.stdout, output.stderr);
    const startTime = isoOrNow(info.State.StartedAt);
    return { startTime, exited: this.exitOf(container, drained, startTime) };
  }

  async removeAll(taskId: string): Promise<void> {
    const containers = await this.docker.listContainers({ all: true, filters: { label: [`${TASK_LABEL}=${taskId}`] } });
    await Promise.all(
      containers.map((c) =>
        this.docker
          .getContainer(c.Id)
          .remove({ force: true })
          .catch((err: { statusCode?: number }) => {
            if (err.statusCode !== 404 && err.statusCode !== 409) throw err;
          }),
      ),
    );
  }

  private async exitOf(container: Docker.Container, drained: Promise<void>, knownStart?: string): Promise<ExecutorExit> {
    const result = (await container.wait()) as { StatusCode: number };
    // The output stream ends just after the exit; wait briefly so the tails are complete.
    await Promise.race([drained, new Promise((resolve) => setTimeout(resolve, 2000))]);
    const info = await container.inspect().catch(() => undefined);
    return {
      exitCode: result.StatusCode,
      startTime: knownStart ?? isoOrNow(info?.State.StartedAt),
      endTime: isoOrNow(info?.State.FinishedAt),
    };
  }

  private async ensureImage(image: string): Promise<void> {
    try {
      await this.docker.getImage(image).inspect();
      return;
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode !== 404) throw dockerError('could not reach the Docker engine', err);
    }
    if (!this.settings.pull_images) {
      throw new DomainError(ErrorCode.ComputeFailed, `image ${image} is not present locally and compute.local.pull_images is false`);
    }
    try {
      const stream = await this.docker.pull(image);
      await new Promise<void>((resolve, reject) => this.docker.modem.followProgress(stream, (err) => (err ? reject(err) : resolve())));
    } catch (err) {
      throw dockerError(`could not pull image ${image}`, err);
    }
  }
}

function isoOrNow(value: string | undefined): string {
  const t = value ? Date.parse(value) : NaN;
  return Number.isFinite(t) && t > 0 ? new Date(t).toISOString() : new Date().toISOString();
}

function cleanDockerMessage(message: string): string {
  return message.replace(/^\(HTTP code \d+\)[^-]*- /, '').trim();
}

function dockerError(context: string, err: unknown): DomainError {
  return new DomainError(ErrorCode.ComputeFailed, `${context}: ${cleanDockerMessage((err as Error).message ?? String(err))}`);
}

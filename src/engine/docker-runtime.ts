import Docker from 'dockerode';
import { DomainError, ErrorCode } from '../domain/domain-error';
import { dockerOptions, EXECUTOR_LABEL, executorUser, TASK_LABEL } from './docker-options';
import { ExecutionPlan, PlanExecutor, TaskLayout } from './execution-plan';
import type { ExecutorOutput } from './executor-output';
import { makeDirInRoot, openToEveryUser } from './task-root';
import { abortedError, ExecutorExit, ExecutorIo, ExecutorRuntime, executorName, LeftoverExecutor, RunningExecutor, StartSignals } from './executor-runtime';

export interface DockerRuntimeSettings {
  docker_socket: string;
  allow_network: boolean;
  pull_images: boolean;
  stop_timeout_s: number;
  /** Executors run as the image's root user, with Docker's default capabilities. */
  run_as_root: boolean;
  /** uid[:gid] for images whose USER is root or unset; empty: executorUser() picks. */
  executor_user: string;
}

/** How long removeAll keeps trying after the stop timeout before it gives up. */
const REMOVE_GRACE_MS = 30_000;

type Stream = NodeJS.ReadableStream & { destroy?: () => void };

/**
 * Runs executors as Docker containers. Containers are not auto-removed: they stay until their task ends, so a
 * restarted tesp can adopt them or read their exit codes.
 */
export class DockerRuntime implements ExecutorRuntime {
  readonly kind = 'docker' as const;
  readonly survivesRestart = true;
  private readonly docker: Docker;
  private engineId?: Promise<string>;

  constructor(private readonly settings: DockerRuntimeSettings) {
    this.docker = new Docker({ socketPath: settings.docker_socket });
  }

  location(): Promise<string> {
    // The engine's own id, not the socket path: two hosts may both use /var/run/docker.sock.
    this.engineId ??= this.docker.info().then(
      (info: { ID?: string }) => `docker engine ${info.ID ?? this.settings.docker_socket}`,
      (err: unknown) => {
        this.engineId = undefined;
        throw dockerError('could not reach the Docker engine', err);
      },
    );
    return this.engineId;
  }

  async start(plan: ExecutionPlan, executor: PlanExecutor, layout: TaskLayout, io: ExecutorIo, signals: StartSignals): Promise<RunningExecutor> {
    const { output } = io;
    await this.ensureImage(executor.image, signals.abort);
    if (signals.abort.aborted) throw abortedError();
    const user = await this.userFor(executor.image);
    const options = dockerOptions(plan, executor, layout, { allowNetwork: this.settings.allow_network, user });
    const withStdin = io.stdin !== undefined;
    if (executor.workdir) {
      // Made through handles that follow no link: a link the task planted never makes tesp create a host directory.
      await makeDirInRoot(layout.rootDir, executor.workdir).catch(() => undefined);
      // Writable for the executor's user when the workdir lies in a writable mount (seen nowhere else).
      await openToEveryUser(layout.rootDir, executor.workdir).catch(() => undefined);
    }
    // A container of this name that never started (a previous process died between create and start) goes first.
    await this.docker.getContainer(options.name!).remove({ force: true }).catch(() => undefined);
    const container = await this.docker.createContainer(options).catch((err: unknown) => {
      throw dockerError(`could not create the container for executors[${executor.index}] (${executor.image})`, err);
    });
    // Attach before start so no early output is lost.
    const stream = (await container.attach({ stream: true, stdin: withStdin, stdout: true, stderr: true, hijack: withStdin })) as Stream;
    const stopFollowing = follow(stream, signals.detach);
    container.modem.demuxStream(stream, output.stdout, output.stderr);
    const startTime = new Date().toISOString();
    try {
      await container.start();
    } catch (err) {
      stopFollowing.release();
      const message = cleanDockerMessage((err as Error).message ?? String(err));
      // Like `docker run`, a command that cannot be executed is the executor's failure (127/126), not tesp's.
      const notRunnable = /exec: "[^"]*": .*(executable file not found|no such file or directory|permission denied|exec format error)/i.exec(message);
      if (notRunnable) {
        output.stderr.write(Buffer.from(`tesp: cannot execute ${JSON.stringify(executor.command[0])}: ${message}\n`));
        const exitCode = /not found|no such file/i.test(notRunnable[1]) ? 127 : 126;
        return { startTime, exited: Promise.resolve({ exitCode, startTime, endTime: new Date().toISOString() }) };
      }
      throw dockerError(`could not start executors[${executor.index}] (${executor.image})`, err);
    }
    if (io.stdin) {
      io.stdin.on('error', () => (stream as unknown as NodeJS.WritableStream).end());
      io.stdin.pipe(stream as unknown as NodeJS.WritableStream);
    }
    return { startTime, exited: this.exitOf(container, stopFollowing, signals.detach) };
  }

  async leftovers(taskId: string): Promise<LeftoverExecutor[]> {
    const containers = await this.listTask(taskId);
    return containers
      .map((c) => ({ index: Number(c.Labels[EXECUTOR_LABEL]), running: c.State === 'running', started: c.State !== 'created' }))
      .filter((c) => Number.isInteger(c.index) && c.index >= 0)
      .sort((a, b) => a.index - b.index);
  }

  async adopt(taskId: string, index: number, output: ExecutorOutput, detach: AbortSignal): Promise<RunningExecutor> {
    const container = this.docker.getContainer(executorName(taskId, index));
    const info = await container.inspect();
    // The logs from the start: the tails and the stdout/stderr files are rebuilt as if followed all along.
    const stream = (await container.logs({ follow: true, stdout: true, stderr: true, abortSignal: detach })) as unknown as Stream;
    const stopFollowing = follow(stream, detach);
    container.modem.demuxStream(stream, output.stdout, output.stderr);
    const startTime = isoOrNow(info.State.StartedAt);
    return { startTime, exited: this.exitOf(container, stopFollowing, detach, startTime) };
  }

  async removeAll(taskId: string): Promise<number> {
    const deadline = Date.now() + this.settings.stop_timeout_s * 1000 + REMOVE_GRACE_MS;
    let stopped = 0;
    for (;;) {
      const containers = await this.listTask(taskId);
      if (containers.length === 0) return stopped;
      if (Date.now() > deadline) {
        throw new DomainError(ErrorCode.ComputeFailed, `could not remove the containers of task ${taskId}: ${containers.map((c) => c.Names.join(',')).join(' ')}`);
      }
      await Promise.all(
        containers.map(async (c) => {
          const container = this.docker.getContainer(c.Id);
          // SIGTERM, then SIGKILL after the stop timeout; a container that is not running answers 304, ignored.
          if (c.State === 'running') {
            stopped += 1;
            await container.stop({ t: this.settings.stop_timeout_s }).catch(() => undefined);
          }
          // 404: gone already; 409: a removal is in progress (the next round sees it gone).
          await container.remove({ force: true }).catch((err: { statusCode?: number }) => {
            if (err.statusCode !== 404 && err.statusCode !== 409) throw dockerError(`could not remove container ${c.Names.join(',')}`, err);
          });
        }),
      );
      if ((await this.listTask(taskId)).length > 0) await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  private listTask(taskId: string): Promise<Docker.ContainerInfo[]> {
    return this.docker.listContainers({ all: true, filters: { label: [`${TASK_LABEL}=${taskId}`] } }).catch((err: unknown) => {
      throw dockerError('could not reach the Docker engine', err);
    });
  }

  private async exitOf(container: Docker.Container, following: Following, signal: AbortSignal, knownStart?: string): Promise<ExecutorExit> {
    let result: { StatusCode: number };
    try {
      result = (await container.wait({ abortSignal: signal })) as { StatusCode: number };
    } catch (err) {
      following.release();
      if (signal.aborted) throw abortedError();
      throw dockerError('lost the container while waiting for it to exit', err);
    }
    // The output stream ends just after the exit; wait briefly so the tails are complete.
    await Promise.race([following.drained, new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
    following.release();
    if (signal.aborted) throw abortedError();
    const info = await container.inspect().catch(() => undefined);
    return {
      exitCode: result.StatusCode,
      startTime: knownStart ?? isoOrNow(info?.State.StartedAt),
      endTime: isoOrNow(info?.State.FinishedAt),
    };
  }

  /** The user an executor of this image runs as; undefined: the image's own (compute.local.run_as_root). */
  private async userFor(image: string): Promise<string | undefined> {
    if (this.settings.run_as_root) return undefined;
    const info = (await this.docker.getImage(image).inspect().catch((err: unknown) => {
      throw dockerError(`could not inspect image ${image}`, err);
    })) as { Config?: { User?: string } };
    return executorUser(info.Config?.User, this.settings.executor_user, ownIds());
  }

  private async ensureImage(image: string, signal: AbortSignal): Promise<void> {
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
      const stream = (await this.docker.pull(image, { abortSignal: signal })) as Stream;
      const stopFollowing = follow(stream, signal);
      try {
        await new Promise<void>((resolve, reject) => this.docker.modem.followProgress(stream, (err) => (err ? reject(err) : resolve())));
      } finally {
        stopFollowing.release();
      }
    } catch (err) {
      if (signal.aborted) throw abortedError();
      throw dockerError(`could not pull image ${image}`, err);
    }
  }
}

interface Following {
  /** Settles when the stream has ended (or failed). */
  drained: Promise<void>;
  /** Closes the stream and forgets the signal. */
  release(): void;
}

/** Watches a stream from the engine; an abort closes it so no connection is left open after cancel or detach. */
function follow(stream: Stream, signal: AbortSignal): Following {
  const drained = new Promise<void>((resolve) => {
    stream.on('end', resolve);
    stream.on('close', resolve);
    stream.on('error', () => resolve());
  });
  const close = () => stream.destroy?.();
  signal.addEventListener('abort', close, { once: true });
  if (signal.aborted) close();
  return {
    drained,
    release: () => {
      signal.removeEventListener('abort', close);
      close();
    },
  };
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

function ownIds(): { uid: number; gid: number } | undefined {
  return process.getuid && process.getgid ? { uid: process.getuid(), gid: process.getgid() } : undefined;
}

import { Module } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LOGGER, Logger } from '../common/logger';
import { dataDir } from '../config/settings.loader';
import { SETTINGS } from '../config/settings.module';
import type { Settings } from '../config/settings.schema';
import { DockerRuntime } from '../engine/docker-runtime';
import { ProcessRuntime } from '../engine/process-runtime';
import { Staging } from '../engine/staging';
import { TaskRunner } from '../engine/task-runner';
import { StorageRegistry } from '../storage/storage-registry';
import { StorageModule } from '../storage/storage.module';
import { COMPUTE_BACKEND, ComputeBackend } from './compute-backend';
import { LocalComputeBackend } from './local/local-compute.backend';
import { PulsarComputeBackend } from './pulsar/pulsar-compute.backend';
import { RunnerPool } from './pulsar/runner-pool';
import { parseRunnerEntries } from '../config/runner-entries';
import { ContainerSweeper } from '../engine/container-sweeper';
import type { ScriptRuntime } from '../engine/job-script';
import { SlurmClient, slurmCommandLog, slurmWorkDir } from '../engine/slurm-client';
import { SlurmJobWatch } from '../engine/slurm-job-watch';
import { SlurmComputeBackend } from './local/slurm-compute.backend';

/**
 * The one factory for the compute port, from the compute settings (`server` says where the API listens: the default
 * base of the staging URLs AMQP runners use).
 */
export function createComputeBackend(
  compute: Settings['compute'],
  dataDirectory: string,
  storage: StorageRegistry,
  logger: Logger,
  server: Pick<Settings['server'], 'host' | 'port'> = { host: '127.0.0.1', port: 8080 },
): ComputeBackend {
  switch (compute.backend) {
    case 'local': {
      const local = compute.local;
      if (local.runtime === 'slurm') return createSlurmBackend(compute, dataDirectory, storage, logger);
      const runtime = local.runtime === 'docker' ? new DockerRuntime(local) : new ProcessRuntime(local);
      const runner = new TaskRunner(runtime, new Staging(storage), { logTailBytes: local.log_tail_bytes, logRefreshMs: local.log_refresh_ms });
      return new LocalComputeBackend(runner, {
        workDir: path.join(dataDirectory, 'work'),
        keepTaskDirs: local.keep_task_dirs,
        maxConcurrentTasks: local.max_concurrent_tasks,
      }, logger);
    }
    case 'pulsar': {
      const pulsar = compute.pulsar;
      const entries = parseRunnerEntries(pulsar.runners);
      if (entries.length === 0) throw new Error('compute.backend is pulsar but compute.pulsar.runners lists no runner');
      const pool = new RunnerPool(entries, { healthIntervalMs: pulsar.health_interval_ms, requestTimeoutMs: pulsar.request_timeout_ms }, logger);
      return new PulsarComputeBackend(pool, storage, {
        maxConcurrentTasks: pulsar.max_concurrent_tasks,
        pollIntervalMs: pulsar.poll_interval_ms,
        pollMaxIntervalMs: Math.max(pulsar.poll_max_interval_ms, pulsar.poll_interval_ms),
        logTailBytes: pulsar.log_tail_bytes,
        logRefreshMs: pulsar.log_refresh_ms,
        amqp: {
          stagingUrl: pulsar.staging_url || `http://${server.host === '0.0.0.0' || server.host === '::' ? os.hostname() : server.host}:${server.port}`,
          stagingSecret: stagingSecret(pulsar, entries.some((entry) => entry.transport === 'amqp'), logger),
          statusIntervalMs: pulsar.amqp_status_interval_ms,
          publishTimeoutMs: pulsar.request_timeout_ms,
        },
      }, logger);
    }
    default:
      throw new Error(`compute.backend "${compute.backend as string}" has no implementation`);
  }
}

/** The staging URLs' secret: the setting's file, the setting, or (one replica only) a random one per process. */
function stagingSecret(pulsar: Settings['compute']['pulsar'], needed: boolean, logger: Logger): string {
  if (pulsar.staging_secret_file) {
    const secret = readFileSync(pulsar.staging_secret_file, 'utf8').trim();
    if (!secret) throw new Error(`compute.pulsar.staging_secret_file (${pulsar.staging_secret_file}) is empty`);
    return secret;
  }
  if (pulsar.staging_secret) return pulsar.staging_secret;
  if (needed) logger.warn('compute.pulsar.staging_secret is not set: staging URLs are valid on this replica only; set the same secret on every replica');
  return randomBytes(32).toString('base64url');
}

/** The local backend's slurm runtime: tasks as Slurm jobs, submitted from this host. */
function createSlurmBackend(compute: Settings['compute'], dataDirectory: string, storage: StorageRegistry, logger: Logger): ComputeBackend {
  const { local, slurm } = compute;
  const client = new SlurmClient({ commandTimeoutMs: slurm.command_timeout_ms, onCommand: slurmCommandLog(logger) });
  return new SlurmComputeBackend(client, new SlurmJobWatch(client, slurm.poll_interval_ms, logger), new Staging(storage), new ContainerSweeper(local.docker_socket, logger), {
    workDir: slurmWorkDir(slurm, dataDirectory),
    keepTaskDirs: local.keep_task_dirs,
    maxConcurrentTasks: local.max_concurrent_tasks,
    run: {
      slurm: { partition: slurm.partition, account: slurm.account, sbatchArgs: slurm.sbatch_args },
      containers: slurm.containers as ScriptRuntime,
      apptainerCommand: slurm.apptainer_command,
      allowNetwork: local.allow_network,
      runAsRoot: local.run_as_root,
      executorUser: local.executor_user,
      logTailBytes: local.log_tail_bytes,
      logRefreshMs: local.log_refresh_ms,
      launchTimeoutMs: slurm.launch_timeout_s * 1000,
    },
  }, logger);
}

@Module({
  imports: [StorageModule],
  providers: [
    {
      provide: COMPUTE_BACKEND,
      inject: [SETTINGS, StorageRegistry, LOGGER],
      useFactory: (settings: Settings, storage: StorageRegistry, logger: Logger) => createComputeBackend(settings.compute, dataDir(settings), storage, logger, settings.server),
    },
  ],
  exports: [COMPUTE_BACKEND],
})
export class ComputeModule {}

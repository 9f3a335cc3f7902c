import { Module } from '@nestjs/common';
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

/** The one factory for the compute port, from the compute settings. */
export function createComputeBackend(compute: Settings['compute'], dataDirectory: string, storage: StorageRegistry, logger: Logger): ComputeBackend {
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
      }, logger);
    }
    default:
      throw new Error(`compute.backend "${compute.backend as string}" has no implementation`);
  }
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
      useFactory: (settings: Settings, storage: StorageRegistry, logger: Logger) => createComputeBackend(settings.compute, dataDir(settings), storage, logger),
    },
  ],
  exports: [COMPUTE_BACKEND],
})
export class ComputeModule {}

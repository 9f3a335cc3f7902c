import { promises as fs, readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import type { Logger } from '../common/logger';
import { jobHostEnvironment } from '../config/host-environment';
import { dataDir } from '../config/settings.loader';
import type { Settings } from '../config/settings.schema';
import { StorageRegistry } from '../storage/storage-registry';
import { ContainerSweeper } from '../engine/container-sweeper';
import { DirectStaging } from './direct-staging';
import { SlurmClient, slurmCommandLog } from '../engine/slurm-client';
import { SlurmJobWatch } from '../engine/slurm-job-watch';
import { JobManager, SlurmLaunch } from './job-manager';
import { Capabilities, createPulsarRestServer } from './pulsar-rest-server';

// `tesp runner`: the job manager and the Pulsar REST face, built from the same settings as the API (storage for
// direct staging, compute.local for the runtime and stop timeout). No Nest: a plain node:http server.

const VERSION: string = JSON.parse(readFileSync(path.resolve(__dirname, '..', '..', 'package.json'), 'utf8')).version;

export interface RunningRunner {
  port: number;
  stagingDir: string;
  /** Stops serving; jobs keep running and are recovered by the next start. */
  close(): Promise<void>;
}

export function runnerStagingDir(settings: Settings): string {
  return path.resolve(settings.runner.staging_dir || path.join(dataDir(settings), 'runner', 'jobs'));
}

export async function startRunner(settings: Settings, logger: Logger): Promise<RunningRunner> {
  const stagingDir = runnerStagingDir(settings);
  await fs.mkdir(stagingDir, { recursive: true });
  const directStaging = settings.runner.direct_staging ? new DirectStaging(StorageRegistry.fromSettings(settings.storage)) : undefined;
  const manager = new JobManager({
    stagingDir,
    maxConcurrentJobs: settings.runner.max_concurrent_jobs,
    stopTimeoutS: settings.compute.local.stop_timeout_s,
    directStaging,
    sweeper: new ContainerSweeper(settings.compute.local.docker_socket, logger),
    hostEnvironment: jobHostEnvironment(),
    slurm: settings.compute.local.runtime === 'slurm' ? slurmLaunch(settings, logger) : undefined,
    logger,
  });
  await manager.recover();
  const capabilities = (): Capabilities => ({
    tesp_runner: VERSION,
    // What the job script must use on the nodes: with Slurm, the containers of compute.slurm.
    runtime: settings.compute.local.runtime === 'slurm' ? settings.compute.slurm.containers : settings.compute.local.runtime,
    ...(settings.compute.local.runtime === 'slurm' ? { scheduler: 'slurm' } : {}),
    staging_schemes: directStaging?.schemes() ?? [],
    active_jobs: manager.activeJobs,
    queued_jobs: manager.queuedJobs,
    max_concurrent_jobs: settings.runner.max_concurrent_jobs,
  });
  const server = createPulsarRestServer({ manager, privateToken: settings.runner.private_token, version: VERSION, capabilities, logger });
  await listen(server, settings.runner.port, settings.runner.host);
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    stagingDir,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      await directStaging?.close();
    },
  };
}

function slurmLaunch(settings: Settings, logger: Logger): SlurmLaunch {
  const slurm = settings.compute.slurm;
  const client = new SlurmClient({ commandTimeoutMs: slurm.command_timeout_ms, onCommand: slurmCommandLog(logger) });
  return { client, watch: new SlurmJobWatch(client, slurm.poll_interval_ms, logger), settings: { partition: slurm.partition, account: slurm.account, sbatchArgs: slurm.sbatch_args } };
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

import { promises as fs, readFileSync } from 'node:fs';
import { AmqpLink } from '../common/amqp-link';
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
import { PulsarAmqpFace } from './pulsar-amqp-face';
import { Capabilities, createPulsarRestServer } from './pulsar-rest-server';

// `tesp runner`: the job manager with the Pulsar REST face (a plain node:http server, no Nest) and, when
// runner.amqp.url is set, the message-queue face; built from the same settings as the API (storage for direct
// staging, compute.local for the runtime and stop timeout). With AMQP and runner.port 0 it opens no port at all.

const VERSION: string = JSON.parse(readFileSync(path.resolve(__dirname, '..', '..', 'package.json'), 'utf8')).version;

export interface RunningRunner {
  /** 0 when it serves no HTTP (AMQP only). */
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
  const amqpUrl = settings.runner.amqp.url_file ? (await fs.readFile(settings.runner.amqp.url_file, 'utf8')).trim() : settings.runner.amqp.url;
  const face = amqpUrl
    ? new PulsarAmqpFace(new AmqpLink(amqpUrl, brokerLabel(amqpUrl), logger, { prefetch: 16 }), {
        manager: settings.runner.amqp.manager,
        acknowledge: settings.runner.amqp.acknowledge,
        ackRepublishMs: settings.runner.amqp.ack_republish_ms,
        version: VERSION,
        logger,
      })
    : undefined;
  const manager = new JobManager({
    stagingDir,
    maxConcurrentJobs: settings.runner.max_concurrent_jobs,
    stopTimeoutS: settings.compute.local.stop_timeout_s,
    directStaging,
    sweeper: new ContainerSweeper(settings.compute.local.docker_socket, logger),
    hostEnvironment: jobHostEnvironment(),
    slurm: settings.compute.local.runtime === 'slurm' ? slurmLaunch(settings, logger) : undefined,
    logger,
    remoteStagingRetryMs: settings.runner.amqp.upload_retry_ms,
    events: face,
  });
  await manager.recover();
  await face?.start(manager);
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
  const serveHttp = !face || settings.runner.port !== 0;
  const server = serveHttp ? createPulsarRestServer({ manager, privateToken: settings.runner.private_token, version: VERSION, capabilities, logger }) : undefined;
  if (server) await listen(server, settings.runner.port, settings.runner.host);
  const port = server ? (server.address() as AddressInfo).port : 0;
  return {
    port,
    stagingDir,
    close: async () => {
      if (server) {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
        });
      }
      await face?.close();
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

/** The broker as a log may show it: scheme, host, port and vhost, no credentials. */
function brokerLabel(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname || '/'}`;
  } catch {
    return 'the broker (runner.amqp.url)';
  }
}

import { promises as fs } from 'node:fs';
import Docker from 'dockerode';
import type { Logger } from '../common/logger';
import { errorMessage } from '../common/redact';
import { JOB_LABEL } from './job-layout';

// Killing a job's `docker run` does not stop its container (pulsar-protocol reference §7): after a cancel, the
// containers the job script labelled with the job id are removed here, when a Docker socket is there to ask.
export class ContainerSweeper {
  private readonly docker: Docker;

  constructor(
    private readonly socketPath: string,
    private readonly logger: Logger,
  ) {
    this.docker = new Docker({ socketPath, timeout: 15_000 });
  }

  /** Removes (forcibly) every container labelled with the job id; how many were removed. */
  async removeContainersOf(jobId: string): Promise<number> {
    const socket = await fs.stat(this.socketPath).catch(() => undefined);
    if (!socket?.isSocket()) return 0;
    try {
      const containers = await this.docker.listContainers({ all: true, filters: { label: [`${JOB_LABEL}=${jobId}`] } });
      await Promise.all(containers.map((container) => this.docker.getContainer(container.Id).remove({ force: true }).catch((err: unknown) => {
        if ((err as { statusCode?: number }).statusCode !== 404) throw err;
      })));
      if (containers.length > 0) this.logger.info({ job_id: jobId, containers: containers.length }, 'removed the containers of a cancelled job');
      return containers.length;
    } catch (err) {
      this.logger.warn({ job_id: jobId, err: errorMessage(err) }, 'could not remove the containers of a cancelled job');
      return 0;
    }
  }
}

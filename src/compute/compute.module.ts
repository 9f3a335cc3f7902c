import { Module } from '@nestjs/common';
import * as path from 'node:path';
import { SETTINGS } from '../config/settings.module';
import type { Settings } from '../config/settings.schema';
import { dataDir } from '../config/settings.loader';
import { LOGGER, Logger } from '../common/logger';
import { StorageModule } from '../storage/storage.module';
import { StagingService } from '../storage/staging.service';
import { COMPUTE_BACKEND, ComputeBackend } from './compute-backend';
import { DockerRuntime } from './local/docker-runtime';
import { ProcessRuntime } from './local/process-runtime';
import { LocalComputeBackend } from './local/local-compute.backend';

/** The one factory for the compute port. */
export function createComputeBackend(settings: Settings, staging: StagingService, logger: Logger): ComputeBackend {
  switch (settings.compute.backend) {
    case 'local': {
      const local = settings.compute.local;
      const runtime = local.runtime === 'docker' ? new DockerRuntime(local) : new ProcessRuntime(local);
      return new LocalComputeBackend(runtime, staging, {
        workDir: path.join(dataDir(settings), 'work'),
        logTailBytes: local.log_tail_bytes,
        logRefreshMs: local.log_refresh_ms,
        keepTaskDirs: local.keep_task_dirs,
      }, logger);
    }
    default:
      throw new Error(`compute.backend "${settings.compute.backend as string}" has no implementation`);
  }
}

@Module({
  imports: [StorageModule],
  providers: [{ provide: COMPUTE_BACKEND, inject: [SETTINGS, StagingService, LOGGER], useFactory: createComputeBackend }],
  exports: [COMPUTE_BACKEND],
})
export class ComputeModule {}

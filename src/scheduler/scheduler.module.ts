import { BeforeApplicationShutdown, Inject, Module, OnApplicationBootstrap } from '@nestjs/common';
import { LOGGER, Logger } from '../common/logger';
import { COMPUTE_BACKEND, ComputeBackend } from '../compute/compute-backend';
import { ComputeModule } from '../compute/compute.module';
import { SETTINGS } from '../config/settings.module';
import type { Settings } from '../config/settings.schema';
import { PersistenceModule } from '../persistence/persistence.module';
import { TASK_REPOSITORY, TaskRepository } from '../persistence/task-repository';
import { TaskScheduler } from './task-scheduler';

@Module({
  imports: [PersistenceModule, ComputeModule],
  providers: [
    {
      provide: TaskScheduler,
      inject: [TASK_REPOSITORY, COMPUTE_BACKEND, SETTINGS, LOGGER],
      useFactory: (repo: TaskRepository, backend: ComputeBackend, settings: Settings, logger: Logger) => new TaskScheduler(repo, backend, settings.scheduler, logger),
    },
  ],
  exports: [TaskScheduler],
})
export class SchedulerModule implements OnApplicationBootstrap, BeforeApplicationShutdown {
  constructor(@Inject(TaskScheduler) private readonly scheduler: TaskScheduler) {}

  onApplicationBootstrap(): void {
    this.scheduler.start();
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.scheduler.stop();
  }
}

import { Inject, Module, OnApplicationShutdown } from '@nestjs/common';
import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { SETTINGS } from '../config/settings.module';
import type { Settings } from '../config/settings.schema';
import { dataDir } from '../config/settings.loader';
import { TASK_REPOSITORY, TaskRepository } from './task-repository';
import { SqliteTaskRepository } from './sqlite/sqlite-task.repository';

/** The one factory for the task store port. */
export function createTaskRepository(settings: Settings): TaskRepository {
  switch (settings.store.kind) {
    case 'sqlite': {
      const dir = dataDir(settings);
      mkdirSync(dir, { recursive: true });
      return new SqliteTaskRepository(path.join(dir, settings.store.sqlite.file));
    }
    default:
      throw new Error(`store.kind "${settings.store.kind as string}" has no implementation`);
  }
}

@Module({
  providers: [{ provide: TASK_REPOSITORY, inject: [SETTINGS], useFactory: createTaskRepository }],
  exports: [TASK_REPOSITORY],
})
export class PersistenceModule implements OnApplicationShutdown {
  constructor(@Inject(TASK_REPOSITORY) private readonly repo: TaskRepository) {}

  async onApplicationShutdown(): Promise<void> {
    await this.repo.close();
  }
}

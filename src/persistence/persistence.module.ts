import { Inject, Module, OnApplicationShutdown } from '@nestjs/common';
import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { SETTINGS } from '../config/settings.module';
import type { Settings } from '../config/settings.schema';
import { dataDir } from '../config/settings.loader';
import { TASK_REPOSITORY, TaskRepository } from './task-repository';
import { SqliteTaskRepository } from './sqlite/sqlite-task.repository';

/** The one factory for the task store port: the store settings and the data directory its files go in. */
export function createTaskRepository(store: Settings['store'], dataDir: string): TaskRepository {
  switch (store.kind) {
    case 'sqlite': {
      mkdirSync(dataDir, { recursive: true });
      return new SqliteTaskRepository(path.join(dataDir, store.sqlite.file));
    }
    default:
      throw new Error(`store.kind "${store.kind as string}" has no implementation`);
  }
}

@Module({
  providers: [{ provide: TASK_REPOSITORY, inject: [SETTINGS], useFactory: (settings: Settings) => createTaskRepository(settings.store, dataDir(settings)) }],
  exports: [TASK_REPOSITORY],
})
export class PersistenceModule implements OnApplicationShutdown {
  constructor(@Inject(TASK_REPOSITORY) private readonly repo: TaskRepository) {}

  async onApplicationShutdown(): Promise<void> {
    await this.repo.close();
  }
}

import { Inject, Module, OnApplicationShutdown } from '@nestjs/common';
import { mkdirSync, readFileSync } from 'node:fs';
import { LOGGER, Logger } from '../common/logger';
import * as path from 'node:path';
import { SETTINGS } from '../config/settings.module';
import type { Settings } from '../config/settings.schema';
import { dataDir } from '../config/settings.loader';
import { TASK_REPOSITORY, TaskRepository } from './task-repository';
import { MongoTaskRepository } from './mongodb/mongo-task.repository';
import { SqliteTaskRepository } from './sqlite/sqlite-task.repository';

/**
 * The one factory for the task store port: the store settings and the data directory its files go in. Resolves
 * once the store can be used (MongoDB: connected, waiting for the server with a log line, indexes created).
 */
export async function openTaskRepository(store: Settings['store'], dataDir: string, logger: Logger): Promise<TaskRepository> {
  switch (store.kind) {
    case 'sqlite': {
      mkdirSync(dataDir, { recursive: true });
      return new SqliteTaskRepository(path.join(dataDir, store.sqlite.file), store.full_page_bytes);
    }
    case 'mongodb': {
      const url = store.mongodb.url_file ? readFileSync(store.mongodb.url_file, 'utf8').trim() : store.mongodb.url;
      if (!url) throw new Error('store.kind is mongodb but neither store.mongodb.url nor store.mongodb.url_file is set');
      if (!/^mongodb(\+srv)?:\/\//.test(url)) throw new Error('store.mongodb.url must start with mongodb:// or mongodb+srv://');
      const repo = new MongoTaskRepository(
        { url, serverSelectionTimeoutMs: store.mongodb.server_selection_timeout_ms, fullPageBytes: store.full_page_bytes },
        logger,
      );
      await repo.connect();
      return repo;
    }
    default:
      throw new Error(`store.kind "${store.kind as string}" has no implementation`);
  }
}

@Module({
  providers: [
    {
      provide: TASK_REPOSITORY,
      inject: [SETTINGS, LOGGER],
      useFactory: (settings: Settings, logger: Logger) => openTaskRepository(settings.store, dataDir(settings), logger),
    },
  ],
  exports: [TASK_REPOSITORY],
})
export class PersistenceModule implements OnApplicationShutdown {
  constructor(@Inject(TASK_REPOSITORY) private readonly repo: TaskRepository) {}

  async onApplicationShutdown(): Promise<void> {
    await this.repo.close();
  }
}

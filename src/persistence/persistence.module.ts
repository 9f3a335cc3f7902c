import { Inject, Module, OnApplicationShutdown } from '@nestjs/common';
import { readFileSync } from 'node:fs';
import { LOGGER, Logger } from '../common/logger';
import { errorMessage } from '../common/redact';
import * as path from 'node:path';
import { SETTINGS } from '../config/settings.module';
import type { Settings } from '../config/settings.schema';
import { dataDir } from '../config/settings.loader';
import { pathKind, prepareDataDir } from './data-dir';
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
      prepareDataDir(dataDir);
      return openSqliteStore(path.join(dataDir, store.sqlite.file), logger, store.full_page_bytes);
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

/** The SQLite store in data_dir; a file that cannot be used stops start-up with a message naming it. */
function openSqliteStore(file: string, logger: Logger, fullPageBytes: number): TaskRepository {
  const problem = (why: string) => new Error(`store.sqlite.file ${file} (in data_dir) ${why}`);
  // SQLite would say only "unable to open database file".
  if (pathKind(file) === 'directory') throw problem('is a directory, not a database file');
  try {
    return new SqliteTaskRepository(file, { logger, fullPageBytes });
  } catch (err) {
    throw problem(`cannot be used: ${errorMessage(err)}`);
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

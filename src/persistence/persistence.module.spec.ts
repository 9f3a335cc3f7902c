import { Test } from '@nestjs/testing';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ErrorCode } from '../domain/domain-error';
import { TesState } from '../domain/tes-task';
import { loadSettings } from '../config/settings.loader';
import { SettingsModule } from '../config/settings.module';
import type { Settings } from '../config/settings.schema';
import { createLogger } from '../common/logger';
import { LoggingModule } from '../common/logging.module';
import { openTaskRepository, PersistenceModule } from './persistence.module';
import { TASK_REPOSITORY, TaskRepository } from './task-repository';

describe('PersistenceModule', () => {
  let dir: string;

  beforeEach(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'tesp-persistence-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('provides the SQLite store in the data dir it creates, and closes it on shutdown', async () => {
    const dataDir = path.join(dir, 'nested', 'data');
    const settings = loadSettings({ env: {}, overrides: { data_dir: dataDir, 'store.sqlite.file': 'tasks.db' } });
    const app = await Test.createTestingModule({ imports: [SettingsModule.forRoot(settings), LoggingModule.forRoot(createLogger('silent')), PersistenceModule] }).compile();
    await app.init();
    const repo = app.get<TaskRepository>(TASK_REPOSITORY);
    await repo.insert({ id: 't1', state: TesState.QUEUED, creation_time: '2026-01-01T00:00:00Z', executors: [], logs: [] }, '');
    expect(existsSync(path.join(dataDir, 'tasks.db'))).toBe(true);
    await app.close();
    await expect(repo.getUnscoped('t1')).rejects.toMatchObject({ code: ErrorCode.Unavailable });
  });

  it('builds the store from the store settings and the data dir it is given', async () => {
    const store = loadSettings({ env: {}, overrides: { 'store.sqlite.file': 'given.db' } }).store;
    const repo = await openTaskRepository(store, path.join(dir, 'given'), createLogger('silent'));
    try {
      await repo.insert({ id: 't1', state: TesState.QUEUED, creation_time: '2026-01-01T00:00:00Z', executors: [], logs: [] }, '');
    } finally {
      await repo.close();
    }
    expect(existsSync(path.join(dir, 'given', 'given.db'))).toBe(true);
    const unknown = { ...store, kind: 'postgres' } as unknown as Settings['store'];
    await expect(openTaskRepository(unknown, dir, createLogger('silent'))).rejects.toThrow('store.kind "postgres" has no implementation');
    const noUrl = { ...store, kind: 'mongodb' } as Settings['store'];
    await expect(openTaskRepository(noUrl, dir, createLogger('silent'))).rejects.toThrow(/neither store.mongodb.url nor store.mongodb.url_file is set/);
  });
});

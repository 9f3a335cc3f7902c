import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SqliteTaskRepository } from '../../src/persistence/sqlite/sqlite-task.repository';
import { describeTaskRepositoryContract } from './task-repository.contract';

describeTaskRepositoryContract('SQLite', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tesp-sqlite-'));
  const file = path.join(dir, 'tesp.sqlite');
  let repo = new SqliteTaskRepository(file);
  return {
    repo,
    reopen: async () => {
      await repo.close();
      repo = new SqliteTaskRepository(file);
      return repo;
    },
    cleanup: async () => {
      await repo.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

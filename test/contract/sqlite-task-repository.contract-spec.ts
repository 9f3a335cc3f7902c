import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SqliteTaskRepository } from '../../src/persistence/sqlite/sqlite-task.repository';
import { describeTaskRepositoryContract } from './task-repository.contract';

describeTaskRepositoryContract('SQLite', async (options = {}) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tesp-sqlite-'));
  const file = path.join(dir, 'tesp.sqlite');
  let repo = new SqliteTaskRepository(file, { fullPageBytes: options.fullPageBytes });
  const others: SqliteTaskRepository[] = [];
  return {
    repo,
    reopen: async () => {
      await repo.close();
      repo = new SqliteTaskRepository(file, { fullPageBytes: options.fullPageBytes });
      return repo;
    },
    // A second connection to the file, as a second API process would open.
    openSecond: async () => {
      const second = new SqliteTaskRepository(file);
      others.push(second);
      return second;
    },
    cleanup: async () => {
      await repo.close();
      for (const other of others) await other.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

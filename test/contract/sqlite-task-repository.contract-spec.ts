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

describe('SqliteTaskRepository query plans', () => {
  it('serves list filters from indexes, not table scans', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tesp-sqlite-'));
    const repo = new SqliteTaskRepository(path.join(dir, 'tesp.sqlite'));
    try {
      const plans = [
        repo.explainList('t.state = ?', ['QUEUED']),
        repo.explainList('t.name >= ? AND t.name < ?', ['a', 'b']),
        repo.explainList('EXISTS (SELECT 1 FROM task_tags g WHERE g.key = ? AND g.value = ? AND g.task_seq = t.seq)', ['k', 'v']),
      ].map((lines) => lines.join(' | '));
      expect(plans[0]).toMatch(/USING (COVERING )?INDEX tasks_state_seq/);
      expect(plans[1]).toMatch(/USING (COVERING )?INDEX tasks_name_seq/);
      expect(plans[2]).toMatch(/USING (PRIMARY KEY|COVERING INDEX|INDEX)/);
    } finally {
      void repo.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

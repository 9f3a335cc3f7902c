import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TesState } from '../domain/tes-task';
import { SqliteTaskRepository } from './sqlite/sqlite-task.repository';
import { copyTasks } from './store-copy';

describe('copyTasks', () => {
  let dir: string;

  beforeEach(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'tesp-copy-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('carries every task\'s owner, oldest first, so each user still sees exactly their own', async () => {
    const from = new SqliteTaskRepository(path.join(dir, 'from.sqlite'));
    const to = new SqliteTaskRepository(path.join(dir, 'to.sqlite'));
    try {
      const owners = ['alice', 'bob', '', 'alice'];
      for (const [i, owner] of owners.entries()) {
        await from.insert({ id: `t${i}`, state: TesState.QUEUED, creation_time: '2026-01-01T00:00:00Z', executors: [{ image: 'alpine', command: ['true'] }], logs: [] }, owner);
      }
      expect(await copyTasks(from, to)).toEqual({ copied: 4, alreadyThere: 0 });
      for (const [i, owner] of owners.entries()) expect((await to.getUnscoped(`t${i}`))?.control.owner).toBe(owner);
      const listed = async (owner: string) => (await to.list({ all: false, owner }, { tags: [], pageSize: 10, fields: 'minimal' })).tasks.map((t) => t.id);
      expect(await listed('alice')).toEqual(['t3', 't0']);
      expect(await listed('bob')).toEqual(['t1']);
      expect(await listed('')).toEqual(['t2']);
    } finally {
      await from.close();
      await to.close();
    }
  });
});

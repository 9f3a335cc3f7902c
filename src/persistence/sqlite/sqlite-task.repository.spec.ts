import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ErrorCode } from '../../common/domain-error';
import { TaskRecord, TesState } from '../../tasks/tes-task';
import { SCHEMA_VERSION } from './sqlite-schema';
import { SqliteTaskRepository } from './sqlite-task.repository';

const task = (id: string): TaskRecord => ({
  id,
  state: TesState.QUEUED,
  creation_time: '2026-01-01T00:00:00Z',
  executors: [{ image: 'alpine', command: ['true'] }],
  logs: [],
});

describe('SqliteTaskRepository (file and lifecycle)', () => {
  let dir: string;
  let file: string;

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'tesp-sqlite-'));
    file = path.join(dir, 'tesp.sqlite');
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('opens its file in WAL mode with fsync on commit and a versioned schema', async () => {
    const repo = new SqliteTaskRepository(file);
    await repo.close();
    const db = new Database(file, { readonly: true });
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    } finally {
      db.close();
    }
    // Opening again leaves the schema as it is.
    const again = new SqliteTaskRepository(file);
    await again.close();
  });

  it('refuses a file written by a newer schema', () => {
    const db = new Database(file);
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    expect(() => new SqliteTaskRepository(file)).toThrow(/newer tesp/);
  });

  it('commits inserts queued in the same turn as close, then refuses work', async () => {
    const repo = new SqliteTaskRepository(file);
    const inserted = repo.insert(task('last-one'));
    await repo.close();
    await expect(inserted).resolves.toBeUndefined();
    await expect(repo.insert(task('too-late'))).rejects.toMatchObject({ code: ErrorCode.Unavailable });
    await expect(repo.get('last-one')).rejects.toMatchObject({ code: ErrorCode.Unavailable });
    await repo.close();
    const reopened = new SqliteTaskRepository(file);
    try {
      expect(await reopened.get('last-one')).toEqual(task('last-one'));
    } finally {
      await reopened.close();
    }
  });

  it('sees tasks written by another connection to the same file', async () => {
    const a = new SqliteTaskRepository(file);
    const b = new SqliteTaskRepository(file);
    try {
      await a.insert(task('shared'));
      expect(await b.transition('shared', [TesState.QUEUED], TesState.INITIALIZING)).toMatchObject({ state: TesState.INITIALIZING });
      expect(await a.transition('shared', [TesState.QUEUED], TesState.INITIALIZING)).toBeUndefined();
      await expect(b.insert(task('shared'))).rejects.toMatchObject({ code: ErrorCode.Conflict });
    } finally {
      await a.close();
      await b.close();
    }
  });
});

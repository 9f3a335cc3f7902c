import { closeSync, copyFileSync, mkdtempSync, openSync, renameSync, rmSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { Writable } from 'node:stream';
import { DomainError, ErrorCode } from '../../domain/domain-error';
import { TaskRecord, TesState } from '../../domain/tes-task';
import { SqliteTaskRepository } from './sqlite-task.repository';

// The store's own faults on real SQLite files: the file removed or replaced under a running store, and a file
// with garbage in it. (The full disk needs a small file system: test/e2e/store-faults.e2e-spec.ts.)

const task = (id: string): TaskRecord => ({ id, state: TesState.QUEUED, creation_time: '2026-01-01T00:00:00Z', executors: [{ image: 'alpine', command: ['true'] }], logs: [], description: 'x'.repeat(2000) });

/** The code and message a promise rejected with. */
async function failure(promise: Promise<unknown>): Promise<{ code?: ErrorCode; message: string }> {
  try {
    await promise;
  } catch (err) {
    return { code: err instanceof DomainError ? err.code : undefined, message: (err as Error).message };
  }
  throw new Error('expected a failure');
}

describe('SqliteTaskRepository when its file is removed, replaced or corrupted', () => {
  let dir: string;
  let file: string;
  let logged: string[];
  const logger = () => pino({ level: 'info' }, new Writable({ write: (chunk, _enc, done) => (logged.push(String(chunk)), done()) }));

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'tesp-sqlite-faults-'));
    file = path.join(dir, 'tesp.sqlite');
    logged = [];
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses every write once the file is deleted, still reads what it has, and logs it once', async () => {
    const repo = new SqliteTaskRepository(file, { logger: logger() });
    await repo.insert(task('before'), '');
    unlinkSync(file);
    for (const id of ['after-1', 'after-2']) {
      expect(await failure(repo.insert(task(id), ''))).toEqual({
        code: ErrorCode.StoreBroken,
        message: `the task store's file ${file} was removed or replaced while tesp runs (the path no longer exists); writes are refused, since they would be lost, until tesp is restarted`,
      });
    }
    expect((await failure(repo.patch('before', { from: [TesState.QUEUED], to: TesState.CANCELED, attempt: 0, ops: [] }))).code).toBe(ErrorCode.StoreBroken);
    expect((await repo.getUnscoped('before'))?.id).toBe('before');
    expect(logged.filter((line) => line.includes('was removed or replaced'))).toHaveLength(1);
    await repo.close();
  });

  it('refuses to open when the file is gone but its write-ahead log is there, rather than losing what the log holds', async () => {
    const repo = new SqliteTaskRepository(file);
    await repo.insert(task('in-the-log'), '');
    // As after a crash: the log still holds the task; then the file goes.
    copyFileSync(`${file}-wal`, `${file}-wal.kept`);
    await repo.close();
    renameSync(`${file}-wal.kept`, `${file}-wal`);
    unlinkSync(file);
    expect(() => new SqliteTaskRepository(file)).toThrow(new RegExp(`^the task store's file ${file} does not exist, but its write-ahead log ${file}-wal holds \\d+ bytes`));
  });

  it('refuses writes once another file is put in its place', async () => {
    const repo = new SqliteTaskRepository(file);
    await repo.insert(task('before'), '');
    copyFileSync(file, `${file}.copy`);
    renameSync(`${file}.copy`, file);
    expect(await failure(repo.insert(task('after'), ''))).toMatchObject({ code: ErrorCode.StoreBroken, message: expect.stringContaining('(the path names another file now)') });
    await repo.close();
  });

  it('refuses to open a file with garbage over its pages, naming the file and what quick_check found', async () => {
    const repo = new SqliteTaskRepository(file);
    for (let i = 0; i < 20; i++) await repo.insert(task(`t-${i}`), '');
    await repo.close();
    const pages = Math.floor(statSync(file).size / 4096);
    const fd = openSync(file, 'r+');
    for (let page = 1; page < pages; page++) writeSync(fd, randomBytes(4096), 0, 4096, page * 4096);
    closeSync(fd);
    let thrown: unknown;
    try {
      new SqliteTaskRepository(file);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(DomainError);
    expect((thrown as DomainError).code).toBe(ErrorCode.StoreBroken);
    expect((thrown as DomainError).message).toMatch(new RegExp(`^the task store's file ${file} is corrupted: `));
  });
});

import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SqliteGroupCommit } from './sqlite-group-commit';

// Group commit on a real SQLite file in WAL mode: what commits, what is undone, and how often each write runs.

describe('SqliteGroupCommit', () => {
  let dir: string;
  let db: Database.Database;
  let other: Database.Database | undefined;

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'tesp-group-commit-'));
    db = new Database(path.join(dir, 'store.sqlite'));
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE items (name TEXT PRIMARY KEY)');
  });

  afterEach(() => {
    other?.close();
    other = undefined;
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const names = () => (db.prepare('SELECT name FROM items ORDER BY name').all() as Array<{ name: string }>).map((row) => row.name);
  const insert = (name: string) => () => db.prepare('INSERT INTO items (name) VALUES (?)').run(name).changes;

  it('commits a batch in which nothing fails with each write run once', () => {
    const runs: string[] = [];
    const counted = (name: string) => () => (runs.push(name), insert(name)());
    const outcomes = new SqliteGroupCommit(db).commit([counted('a'), counted('b'), counted('c')]);
    expect(outcomes).toEqual([{ ok: true, value: 1 }, { ok: true, value: 1 }, { ok: true, value: 1 }]);
    expect(runs).toEqual(['a', 'b', 'c']);
    expect(names()).toEqual(['a', 'b', 'c']);
  });

  it('undoes a write that fails after writing, alone, and commits the others', () => {
    const broken = new Error('failed after writing');
    const outcomes = new SqliteGroupCommit(db).commit([
      insert('a'),
      () => {
        insert('half-written')();
        throw broken;
      },
      insert('c'),
    ]);
    expect(outcomes).toEqual([{ ok: true, value: 1 }, { ok: false, error: broken }, { ok: true, value: 1 }]);
    expect(names()).toEqual(['a', 'c']);
  });

  it('fails a write that breaks a constraint and keeps the writes before and after it', () => {
    insert('taken')();
    const outcomes = new SqliteGroupCommit(db).commit([insert('a'), insert('taken'), insert('b')]);
    expect(outcomes.map((outcome) => outcome.ok)).toEqual([true, false, true]);
    expect(String((outcomes[1] as { error: unknown }).error)).toMatch(/UNIQUE constraint failed: items.name/);
    expect(names()).toEqual(['a', 'b', 'taken']);
  });

  it('fails every write, none of them run, when the transaction cannot begin', () => {
    other = new Database(path.join(dir, 'store.sqlite'));
    other.exec('BEGIN IMMEDIATE');
    db.pragma('busy_timeout = 0');
    let runs = 0;
    const outcomes = new SqliteGroupCommit(db).commit([() => ++runs, () => ++runs]);
    expect(outcomes.map((outcome) => outcome.ok)).toEqual([false, false]);
    expect(String((outcomes[0] as { error: unknown }).error)).toMatch(/database is locked/);
    expect(runs).toBe(0);
    other.exec('ROLLBACK');
    expect(names()).toEqual([]);
  });
});

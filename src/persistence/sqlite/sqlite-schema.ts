import Database from 'better-sqlite3';
import { existsSync, statSync } from 'node:fs';
import { DomainError, ErrorCode } from '../../domain/domain-error';
import { storeCorrupt, toDomainError } from './sqlite-task-rows';

// Each entry upgrades the file by one step of PRAGMA user_version. Append new steps; never edit a released one.
//
// tasks.seq is the insertion order: newest first is seq DESC, and paging by seq stays stable while tasks arrive.
// id, state and name have their own columns so lists filter and MINIMAL pages read without parsing the document.
// task_tags holds one row per tag; its primary key (key, task_seq) serves "key exists" and the index
// (key, value, task_seq) serves "key = value", both already in seq order, so a tag filter needs no sort.
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    name TEXT,
    creation_time TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 0,
    doc TEXT NOT NULL
  );
  CREATE INDEX tasks_state_seq ON tasks (state, seq);
  CREATE INDEX tasks_name ON tasks (name);
  CREATE TABLE task_tags (
    key TEXT NOT NULL,
    task_seq INTEGER NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (key, task_seq)
  ) WITHOUT ROWID;
  CREATE INDEX task_tags_key_value ON task_tags (key, value, task_seq);
  `,
  // Leases. The control fields of a task (tes-task.ts TaskControl) live in columns, not in doc, so a claim, a
  // renewal and a take-over are single UPDATE statements. lease_until 0 means no lease or an ended one; the lease
  // holder index is partial because only held tasks (a few per replica) have one. A task the old schema moved past
  // QUEUED had started its first attempt (its logs[0]). The step-1 version column goes on counting document writes.
  `
  ALTER TABLE tasks ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE tasks ADD COLUMN update_seq INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE tasks ADD COLUMN lease_holder TEXT;
  ALTER TABLE tasks ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE tasks ADD COLUMN lease_token TEXT;
  ALTER TABLE tasks ADD COLUMN backend_ref TEXT;
  UPDATE tasks SET attempt = 1 WHERE state <> 'QUEUED';
  CREATE INDEX tasks_lease_holder ON tasks (lease_holder) WHERE lease_holder IS NOT NULL;
  `,
  // Owners. A caller's reads are WHERE owner = ? and walk (owner, seq) newest first. Tasks stored before owners were
  // recorded belong to '' (the anonymous caller): admins see them, no named user does.
  `
  ALTER TABLE tasks ADD COLUMN owner TEXT NOT NULL DEFAULT '';
  CREATE INDEX tasks_owner_seq ON tasks (owner, seq);
  `,
  // The immutable request apart from what changes. A task's request (executors, inputs with their content, tags...)
  // moves to task_requests and is never read or rewritten by a patch, a claim's bookkeeping or a list's size check;
  // tasks.logs keeps the attempts' logs without executor logs (times, outputs, system logs, metadata), and every
  // executor log is a row of its own, so an executor's update writes that row and not all the others.
  // tasks.request_bytes is the request's size and content_bytes that of its inputs' contents, for bounding FULL
  // and BASIC pages without reading the requests.
  `
  CREATE TABLE task_requests (
    task_seq INTEGER PRIMARY KEY,
    request TEXT NOT NULL
  );
  CREATE TABLE task_executor_logs (
    task_seq INTEGER NOT NULL,
    log_index INTEGER NOT NULL,
    executor_index INTEGER NOT NULL,
    log TEXT NOT NULL,
    PRIMARY KEY (task_seq, log_index, executor_index)
  ) WITHOUT ROWID;
  INSERT INTO task_requests (task_seq, request) SELECT seq, json_remove(doc, '$.id', '$.state', '$.logs') FROM tasks;
  INSERT INTO task_executor_logs (task_seq, log_index, executor_index, log)
    SELECT t.seq, l.key, e.key, coalesce(e.value, '{}') FROM tasks t, json_each(t.doc, '$.logs') l, json_each(l.value, '$.logs') e;
  ALTER TABLE tasks ADD COLUMN logs TEXT NOT NULL DEFAULT '[]';
  ALTER TABLE tasks ADD COLUMN request_bytes INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE tasks ADD COLUMN content_bytes INTEGER NOT NULL DEFAULT 0;
  UPDATE tasks SET
    logs = coalesce((SELECT json_group_array(json_remove(l.value, '$.logs') ORDER BY l.key) FROM json_each(tasks.doc, '$.logs') l), '[]'),
    request_bytes = (SELECT length(CAST(r.request AS BLOB)) FROM task_requests r WHERE r.task_seq = tasks.seq),
    content_bytes = coalesce((SELECT sum(length(CAST(i.value ->> '$.content' AS BLOB))) FROM json_each(tasks.doc, '$.inputs') i), 0);
  ALTER TABLE tasks DROP COLUMN doc;
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Opens (checking, creating or upgrading) the task database: WAL, fsync on every commit, waits on a busy file. */
export function openTaskDatabase(file: string): Database.Database {
  let db: Database.Database | undefined;
  refuseOrphanedLog(file);
  try {
    db = connectTaskDatabase(file);
    checkIntegrity(db, file);
    migrate(db, file);
    refreshStatistics(db);
    return db;
  } catch (err) {
    db?.close();
    // "file is not a database" and the like, told as store faults that name the file.
    throw toDomainError(err, file);
  }
}

/** One more connection to a task database openTaskDatabase has opened (and so created or upgraded) already. */
export function connectTaskDatabase(file: string): Database.Database {
  const db = new Database(file);
  try {
    // Waits on a file another connection is writing, before anything else here touches it.
    db.pragma('busy_timeout = 5000');
    switchToWal(db);
    // FULL: a commit is on disk before insert() resolves, so an id handed to a client survives a power cut.
    db.pragma('synchronous = FULL');
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/**
 * A corrupted file is refused at start, before anything writes to it, rather than serving errors (or worse) later.
 * quick_check reads every page once but skips the index-against-table comparison of integrity_check: on 100 000
 * tasks (114 MB) it takes about 0.2 s with the file in the page cache and 2.6 s from a cold disk.
 */
function checkIntegrity(db: Database.Database, file: string): void {
  const problems = (db.pragma('quick_check(5)') as Array<{ quick_check: string }>).map((row) => row.quick_check);
  if (problems.length === 1 && problems[0] === 'ok') return;
  throw storeCorrupt(file, `PRAGMA quick_check found: ${problems.join('; ')}`);
}

/**
 * The file is gone but its write-ahead log is not: the file was removed (while tesp ran, or since). SQLite would
 * delete the log and start an empty store, losing what the log holds; refuse instead. (A new file is created
 * before its log, so a creator running beside this start never looks like this.)
 */
function refuseOrphanedLog(file: string): void {
  if (existsSync(file)) return;
  const log = `${file}-wal`;
  const size = existsSync(log) ? statSync(log).size : 0;
  if (size === 0) return;
  throw new DomainError(
    ErrorCode.StoreBroken,
    `the task store's file ${file} does not exist, but its write-ahead log ${log} holds ${size} bytes: the file was removed, and starting would lose what the log holds; restore the file, or move the log away to start with an empty store`,
  );
}

/** How long a start waits for another process to finish switching a new file to WAL. */
const WAL_SWITCH_TIMEOUT_MS = 5000;

/**
 * journal_mode = WAL, tried again while the file is busy: switching a new file takes an exclusive lock without
 * SQLite's busy handler, so replicas starting on a new file at once would otherwise fail with "database is locked".
 * Once the file is in WAL mode (it stays so), the pragma takes no lock.
 */
function switchToWal(db: Database.Database): void {
  const deadline = Date.now() + WAL_SWITCH_TIMEOUT_MS;
  for (;;) {
    try {
      db.pragma('journal_mode = WAL');
      return;
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (typeof code !== 'string' || !code.startsWith('SQLITE_BUSY') || Date.now() > deadline) throw err;
      // A synchronous pause: opening is synchronous, at start-up.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }
}

function migrate(db: Database.Database, file: string): void {
  // One step per write transaction, the version read inside it: two processes opening a new file do not both create.
  const step = db.transaction((): boolean => {
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      throw new Error(`${file}: schema version ${version} was written by a newer tesp (this one knows ${SCHEMA_VERSION})`);
    }
    if (version === SCHEMA_VERSION) return false;
    db.exec(MIGRATIONS[version]);
    db.pragma(`user_version = ${version + 1}`);
    return true;
  });
  while (step.immediate());
}

/** Below this many tasks any plan is fast; statistics are not worth their start-up time. */
const MIN_ROWS_FOR_STATISTICS = 1000;

/**
 * Full statistics (sqlite_stat1 and stat4 samples) let the planner weigh one filter against another for the
 * values in hand: walk the newest tasks and check a common name prefix, or read a rare prefix's range and sort it.
 * ANALYZE reads every index (about a quarter of a second per 100 000 tasks), so it runs at start-up and only when
 * the task count has doubled or halved since the last run. PRAGMA optimize is not used: its sampled statistics
 * misjudge these indexes and lead to worse plans than none.
 */
function refreshStatistics(db: Database.Database): void {
  const rows = (db.prepare('SELECT count(*) AS n FROM tasks').get() as { n: number }).n;
  const hasStats = db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'sqlite_stat1'").get() !== undefined;
  const stat = hasStats ? (db.prepare("SELECT stat FROM sqlite_stat1 WHERE tbl = 'tasks' LIMIT 1").get() as { stat: string } | undefined) : undefined;
  const analysed = stat ? parseInt(stat.stat, 10) : undefined;
  const stale = analysed === undefined ? rows >= MIN_ROWS_FOR_STATISTICS : rows >= analysed * 2 || rows * 2 <= analysed;
  if (stale) db.exec('ANALYZE');
}

import Database from 'better-sqlite3';
import { DomainError, ErrorCode } from '../../common/domain-error';
import type { TaskRecord, TesState } from '../../tasks/tes-task';
import type { TaskListPage, TaskListQuery, TaskMutation, TaskRepository } from '../task-repository';

const SCHEMA_VERSION = 1;

// seq orders tasks by insertion (newest first = seq DESC) and makes keyset paging stable under concurrent
// inserts; id and state sit in their own columns so MINIMAL lists never parse the JSON document.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS tasks (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  state TEXT NOT NULL,
  name TEXT,
  creation_time TEXT NOT NULL,
  version INTEGER NOT NULL DEFAULT 0,
  doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_state_seq ON tasks (state, seq);
CREATE INDEX IF NOT EXISTS tasks_name_seq ON tasks (name, seq);
CREATE TABLE IF NOT EXISTS task_tags (
  task_seq INTEGER NOT NULL REFERENCES tasks (seq) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (key, value, task_seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS task_tags_seq ON task_tags (task_seq);
`;

interface Row {
  seq: number;
  id: string;
  state: TesState;
  version: number;
  doc: string;
}

interface PendingInsert {
  task: TaskRecord;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** The embedded task store: one SQLite file in WAL mode, fsynced on every commit (synchronous=FULL). */
export class SqliteTaskRepository implements TaskRepository {
  private readonly db: Database.Database;
  private pending: PendingInsert[] = [];
  private flushScheduled = false;
  private readonly stmts: ReturnType<SqliteTaskRepository['prepare']>;

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('foreign_keys = ON');
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) throw new Error(`${file} was written by a newer tesp (schema ${version})`);
    this.db.exec(SCHEMA);
    this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
    this.stmts = this.prepare();
  }

  private prepare() {
    return {
      insertTask: this.db.prepare('INSERT INTO tasks (id, state, name, creation_time, doc) VALUES (?, ?, ?, ?, ?)'),
      insertTag: this.db.prepare('INSERT OR IGNORE INTO task_tags (task_seq, key, value) VALUES (?, ?, ?)'),
      byId: this.db.prepare('SELECT seq, id, state, version, doc FROM tasks WHERE id = ?'),
      write: this.db.prepare('UPDATE tasks SET state = ?, doc = ?, version = version + 1 WHERE id = ? AND version = ?'),
    };
  }

  insert(task: TaskRecord): Promise<void> {
    // Group commit: inserts from the same event-loop turn share one transaction and one fsync.
    return new Promise((resolve, reject) => {
      this.pending.push({ task: structuredClone(task), resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flushInserts());
      }
    });
  }

  private flushInserts(): void {
    const batch = this.pending;
    this.pending = [];
    this.flushScheduled = false;
    const outcomes: Array<unknown> = [];
    const run = this.db.transaction(() => {
      for (const item of batch) {
        // A savepoint per task: one duplicate id fails alone, the rest of the batch commits.
        try {
          this.db.transaction(() => this.insertOne(item.task))();
          outcomes.push(undefined);
        } catch (err) {
          outcomes.push(err);
        }
      }
    });
    try {
      run.immediate();
    } catch (err) {
      batch.forEach((item) => item.reject(err));
      return;
    }
    batch.forEach((item, i) => {
      const err = outcomes[i];
      if (err === undefined) item.resolve();
      else if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') item.reject(new DomainError(ErrorCode.Conflict, `task ${item.task.id} already exists`));
      else item.reject(err);
    });
  }

  private insertOne(task: TaskRecord): void {
    const seq = Number(this.stmts.insertTask.run(task.id, task.state, task.name ?? null, task.creation_time, JSON.stringify(task)).lastInsertRowid);
    for (const [key, value] of Object.entries(task.tags ?? {})) this.stmts.insertTag.run(seq, key, value);
  }

  async get(id: string): Promise<TaskRecord | undefined> {
    const row = this.stmts.byId.get(id) as Row | undefined;
    return row ? toRecord(row) : undefined;
  }

  async list(query: TaskListQuery): Promise<TaskListPage> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (query.pageToken !== undefined) {
      where.push('t.seq < ?');
      params.push(decodeToken(query.pageToken));
    }
    if (query.state) {
      where.push('t.state = ?');
      params.push(query.state);
    }
    if (query.namePrefix) {
      // A range the name index can serve, then an exact check: prefix semantics, case-sensitive, no wildcards.
      where.push('t.name >= ? AND t.name < ? AND substr(t.name, 1, ?) = ?');
      params.push(query.namePrefix, query.namePrefix + '\u{10FFFF}', query.namePrefix.length, query.namePrefix);
    }
    for (const tag of query.tags) {
      if (tag.value) {
        where.push('EXISTS (SELECT 1 FROM task_tags g WHERE g.key = ? AND g.value = ? AND g.task_seq = t.seq)');
        params.push(tag.key, tag.value);
      } else {
        where.push('EXISTS (SELECT 1 FROM task_tags g WHERE g.key = ? AND g.task_seq = t.seq)');
        params.push(tag.key);
      }
    }
    const columns = query.fields === 'minimal' ? 't.seq, t.id, t.state' : 't.seq, t.id, t.state, t.version, t.doc';
    const sql = `SELECT ${columns} FROM tasks t ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY t.seq DESC LIMIT ?`;
    const rows = this.db.prepare(sql).all(...params, query.pageSize + 1) as Row[];
    const more = rows.length > query.pageSize;
    const page = more ? rows.slice(0, query.pageSize) : rows;
    return {
      tasks: page.map((row) => (query.fields === 'minimal' ? { id: row.id, state: row.state } : toRecord(row))),
      nextPageToken: more ? encodeToken(page[page.length - 1].seq) : undefined,
    };
  }

  async transition(id: string, from: readonly TesState[], to: TesState, mutate?: TaskMutation): Promise<TaskRecord | undefined> {
    return this.compareAndSet(id, from, to, mutate);
  }

  async update(id: string, inStates: readonly TesState[], mutate: TaskMutation): Promise<TaskRecord | undefined> {
    return this.compareAndSet(id, inStates, undefined, mutate);
  }

  private compareAndSet(id: string, from: readonly TesState[], to: TesState | undefined, mutate?: TaskMutation): TaskRecord | undefined {
    // better-sqlite3 is synchronous, so read-check-write below runs without interleaving in this process; the
    // version check also guards against another process writing the same file.
    return this.db.transaction((): TaskRecord | undefined => {
      const row = this.stmts.byId.get(id) as Row | undefined;
      if (!row || !from.includes(row.state)) return undefined;
      const task = toRecord(row);
      mutate?.(task);
      task.id = row.id;
      task.state = to ?? row.state;
      const changed = this.stmts.write.run(task.state, JSON.stringify(task), id, row.version).changes;
      return changed === 1 ? task : undefined;
    }).immediate();
  }

  async findByState(states: readonly TesState[], limit: number): Promise<TaskRecord[]> {
    if (states.length === 0) return [];
    const marks = states.map(() => '?').join(', ');
    const rows = this.db
      .prepare(`SELECT seq, id, state, version, doc FROM tasks WHERE state IN (${marks}) ORDER BY seq ASC LIMIT ?`)
      .all(...states, limit) as Row[];
    return rows.map(toRecord);
  }

  async close(): Promise<void> {
    if (this.pending.length) this.flushInserts();
    if (this.db.open) this.db.close();
  }

  /** The query plan of a list query, for checks that filters use indexes. */
  explainList(sqlWhere: string, params: unknown[]): string[] {
    const rows = this.db.prepare(`EXPLAIN QUERY PLAN SELECT t.seq FROM tasks t WHERE ${sqlWhere} ORDER BY t.seq DESC LIMIT 10`).all(...params) as Array<{ detail: string }>;
    return rows.map((r) => r.detail);
  }
}

function toRecord(row: Row): TaskRecord {
  const task = JSON.parse(row.doc) as TaskRecord;
  task.state = row.state;
  return task;
}

const TOKEN_PREFIX = 's1.';

function encodeToken(seq: number): string {
  return Buffer.from(TOKEN_PREFIX + seq.toString(36)).toString('base64url');
}

function decodeToken(token: string): number {
  const text = /^[A-Za-z0-9_-]{1,64}$/.test(token) ? Buffer.from(token, 'base64url').toString() : '';
  const seq = text.startsWith(TOKEN_PREFIX) && /^[0-9a-z]+$/.test(text.slice(TOKEN_PREFIX.length)) ? parseInt(text.slice(TOKEN_PREFIX.length), 36) : NaN;
  if (!Number.isSafeInteger(seq) || seq <= 0) {
    throw new DomainError(ErrorCode.InvalidArgument, 'page_token: not a token this server issued');
  }
  return seq;
}

import Database from 'better-sqlite3';
import { DomainError, ErrorCode } from '../../common/domain-error';
import type { TaskRecord, TesState } from '../../tasks/tes-task';
import type { TaskListPage, TaskListQuery, TaskMutation, TaskRepository } from '../task-repository';
import { decodePageToken, encodePageToken, findByStateStatement, listStatement } from './sqlite-task-queries';
import { openTaskDatabase } from './sqlite-schema';

interface TaskRow {
  seq: number;
  id: string;
  state: TesState;
  doc: string;
}

/** What an insert writes, taken when insert() is called: later changes to the caller's object do not leak in. */
interface NewTask {
  id: string;
  state: TesState;
  name: string | null;
  creationTime: string;
  tags: Record<string, string>;
  doc: string;
}

interface PendingInsert {
  task: NewTask;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** Distinct list and findByState shapes are few; the cap only guards against a flood of odd tag combinations. */
const MAX_CACHED_STATEMENTS = 256;

/** The embedded task store: one SQLite file in WAL mode, fsynced on every commit. */
export class SqliteTaskRepository implements TaskRepository {
  private readonly db: Database.Database;
  private readonly statements = new Map<string, Database.Statement>();
  private readonly insertOne: Database.Transaction<(task: NewTask) => void>;
  private pending: PendingInsert[] = [];
  private flushScheduled = false;
  private closed = false;

  constructor(file: string) {
    this.db = openTaskDatabase(file);
    // Used inside the batch transaction, where better-sqlite3 turns it into a savepoint: a duplicate id fails
    // alone and the rest of its batch still commits.
    this.insertOne = this.db.transaction((task: NewTask) => {
      const { lastInsertRowid } = this.statement('INSERT INTO tasks (id, state, name, creation_time, doc) VALUES (?, ?, ?, ?, ?)')
        .run(task.id, task.state, task.name, task.creationTime, task.doc);
      this.insertTags(Number(lastInsertRowid), task.tags);
    });
  }

  insert(task: TaskRecord): Promise<void> {
    if (this.closed) return Promise.reject(storeClosed());
    // Group commit: inserts from the same event-loop turn share one transaction and one fsync; each promise
    // settles only after that commit.
    return new Promise((resolve, reject) => {
      const snapshot: NewTask = {
        id: task.id,
        state: task.state,
        name: task.name ?? null,
        creationTime: task.creation_time,
        tags: { ...task.tags },
        doc: JSON.stringify(task),
      };
      this.pending.push({ task: snapshot, resolve, reject });
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
    if (batch.length === 0) return;
    const outcomes: unknown[] = [];
    try {
      this.db
        .transaction(() => {
          for (const item of batch) {
            try {
              this.insertOne(item.task);
              outcomes.push(undefined);
            } catch (err) {
              outcomes.push(err);
            }
          }
        })
        .immediate();
    } catch (err) {
      const failure = toDomainError(err);
      batch.forEach((item) => item.reject(failure));
      return;
    }
    batch.forEach((item, i) => {
      const err = outcomes[i];
      if (err === undefined) item.resolve();
      else if (isUniqueViolation(err)) item.reject(new DomainError(ErrorCode.Conflict, `task ${item.task.id} already exists`));
      else item.reject(toDomainError(err));
    });
  }

  async get(id: string): Promise<TaskRecord | undefined> {
    const row = this.run(() => this.statement('SELECT seq, id, state, doc FROM tasks WHERE id = ?').get(id)) as TaskRow | undefined;
    return row ? toRecord(row) : undefined;
  }

  async list(query: TaskListQuery): Promise<TaskListPage> {
    const after = query.pageToken === undefined ? undefined : decodePageToken(query.pageToken);
    const { sql, params } = listStatement(query, after);
    const rows = this.run(() => this.statement(sql).all(...params)) as TaskRow[];
    const more = rows.length > query.pageSize;
    const page = more ? rows.slice(0, query.pageSize) : rows;
    return {
      tasks: page.map((row) => (query.fields === 'minimal' ? { id: row.id, state: row.state } : toRecord(row))),
      ...(more ? { nextPageToken: encodePageToken(page[page.length - 1].seq) } : {}),
    };
  }

  async transition(id: string, from: readonly TesState[], to: TesState, mutate?: TaskMutation): Promise<TaskRecord | undefined> {
    return this.compareAndSet(id, from, to, mutate);
  }

  async update(id: string, inStates: readonly TesState[], mutate: TaskMutation): Promise<TaskRecord | undefined> {
    return this.compareAndSet(id, inStates, undefined, mutate);
  }

  /** Read, check and write in one IMMEDIATE transaction: no other writer, in this process or another, slips in between. */
  private compareAndSet(id: string, allowed: readonly TesState[], to: TesState | undefined, mutate?: TaskMutation): TaskRecord | undefined {
    return this.run(() =>
      this.db
        .transaction((): TaskRecord | undefined => {
          const row = this.statement('SELECT seq, id, state, doc FROM tasks WHERE id = ?').get(id) as TaskRow | undefined;
          if (!row || !allowed.includes(row.state)) return undefined;
          // A fresh parse is a deep copy: a mutation that throws leaves nothing changed.
          const task = toRecord(row);
          const tagsBefore = task.tags ?? {};
          mutate?.(task);
          // The store owns id and state: a mutation cannot rename a task or move it past the state machine.
          task.id = row.id;
          task.state = to ?? row.state;
          this.statement('UPDATE tasks SET state = ?, name = ?, creation_time = ?, doc = ?, version = version + 1 WHERE seq = ?')
            .run(task.state, task.name ?? null, task.creation_time, JSON.stringify(task), row.seq);
          if (JSON.stringify(tagsBefore) !== JSON.stringify(task.tags ?? {})) {
            const remove = this.statement('DELETE FROM task_tags WHERE key = ? AND task_seq = ?');
            for (const key of Object.keys(tagsBefore)) remove.run(key, row.seq);
            this.insertTags(row.seq, task.tags);
          }
          return task;
        })
        .immediate(),
    );
  }

  async findByState(states: readonly TesState[], limit: number): Promise<TaskRecord[]> {
    if (states.length === 0 || limit < 1) return [];
    const { sql, params } = findByStateStatement(states, limit);
    const rows = this.run(() => this.statement(sql).all(...params)) as TaskRow[];
    return rows.map(toRecord);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Inserts queued in this turn still commit; their promises resolve as usual.
    this.flushInserts();
    this.closed = true;
    this.statements.clear();
    this.db.close();
  }

  private insertTags(seq: number, tags: Record<string, string> | undefined): void {
    const insert = this.statement('INSERT INTO task_tags (key, task_seq, value) VALUES (?, ?, ?)');
    for (const [key, value] of Object.entries(tags ?? {})) insert.run(key, seq, value);
  }

  private statement(sql: string): Database.Statement {
    let stmt = this.statements.get(sql);
    if (!stmt) {
      if (this.statements.size >= MAX_CACHED_STATEMENTS) this.statements.clear();
      stmt = this.db.prepare(sql);
      this.statements.set(sql, stmt);
    }
    return stmt;
  }

  /** Runs a synchronous database call, refusing after close and turning SQLite errors into domain errors. */
  private run<T>(work: () => T): T {
    if (this.closed) throw storeClosed();
    try {
      return work();
    } catch (err) {
      throw toDomainError(err);
    }
  }
}

function toRecord(row: TaskRow): TaskRecord {
  const task = JSON.parse(row.doc) as TaskRecord;
  task.state = row.state;
  return task;
}

function isUniqueViolation(err: unknown): boolean {
  return sqliteCode(err) === 'SQLITE_CONSTRAINT_UNIQUE';
}

/**
 * The SQLite result code of an error from better-sqlite3. Matched by shape, not instanceof: the native addon keeps
 * the SqliteError class it was first given, which is not this module's copy (nor this realm's Error) when modules
 * are loaded more than once, as jest does per test file.
 */
function sqliteCode(err: unknown): string | undefined {
  const { name, code } = (typeof err === 'object' && err !== null ? err : {}) as { name?: unknown; code?: unknown };
  return name === 'SqliteError' && typeof code === 'string' ? code : undefined;
}

function storeClosed(): DomainError {
  return new DomainError(ErrorCode.Unavailable, 'the task store is closed');
}

/** SQLite errors become domain errors at this edge; anything else (a mutation's own error) passes through. */
function toDomainError(err: unknown): unknown {
  const code = sqliteCode(err);
  if (code === undefined) return err;
  const busy = code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED');
  return new DomainError(busy ? ErrorCode.Unavailable : ErrorCode.Internal, `task store: ${String((err as { message?: unknown }).message)} (${code})`, busy);
}

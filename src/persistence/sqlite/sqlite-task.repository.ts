import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { DomainError, ErrorCode } from '../../domain/domain-error';
import { applyTaskPatch, PatchResult, TaskPatch } from '../../domain/task-patch';
import type { BackendRef, StoredTask, TaskControl, TaskRecord, TesState } from '../../domain/tes-task';
import type { ClaimOptions, HeldTask, TaskListPage, TaskListQuery, TaskRepository } from '../task-repository';
import {
  CLAIM_NEXT_SQL,
  COUNT_HELD_SQL,
  decodePageToken,
  encodePageToken,
  EXPIRED_LEASES_SQL,
  findByStateStatement,
  HELD_BY_SQL,
  listStatement,
  RELEASE_LEASE_SQL,
  RENEW_LEASES_SQL,
  STORED_TASK_COLUMNS,
  TAKE_OVER_SQL,
} from './sqlite-task-queries';
import { openTaskDatabase } from './sqlite-schema';
import { SqliteWriteQueue } from './sqlite-write-queue';

/** A list row: doc only on full pages. */
interface ListRow {
  seq: number;
  id: string;
  state: TesState;
  doc: string;
}

/** A row read with STORED_TASK_COLUMNS. */
interface StoredRow extends ListRow {
  attempt: number;
  update_seq: number;
  lease_holder: string | null;
  lease_until: number;
  lease_token: string | null;
  backend_ref: string | null;
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

/** Distinct list and findByState shapes are few; the cap only guards against a flood of odd tag combinations. */
const MAX_CACHED_STATEMENTS = 256;

/**
 * The embedded task store: one SQLite file in WAL mode, fsynced on every commit. Several processes may share the
 * file: every write is one IMMEDIATE transaction, and the lease operations are single statements inside it.
 */
export class SqliteTaskRepository implements TaskRepository {
  private readonly db: Database.Database;
  private readonly statements = new Map<string, Database.Statement>();
  private readonly writes: SqliteWriteQueue;
  private closed = false;

  constructor(file: string) {
    this.db = openTaskDatabase(file);
    this.writes = new SqliteWriteQueue(this.db, toDomainError);
  }

  insert(task: TaskRecord): Promise<void> {
    const snapshot: NewTask = {
      id: task.id,
      state: task.state,
      name: task.name ?? null,
      creationTime: task.creation_time,
      tags: { ...task.tags },
      doc: recordJson(task),
    };
    return this.write(() => {
      let seq: number;
      try {
        const inserted = this.statement('INSERT INTO tasks (id, state, name, creation_time, doc) VALUES (?, ?, ?, ?, ?)')
          .run(snapshot.id, snapshot.state, snapshot.name, snapshot.creationTime, snapshot.doc);
        seq = Number(inserted.lastInsertRowid);
      } catch (err) {
        if (sqliteCode(err) === 'SQLITE_CONSTRAINT_UNIQUE') throw new DomainError(ErrorCode.Conflict, `task ${snapshot.id} already exists`);
        throw err;
      }
      const insertTag = this.statement('INSERT INTO task_tags (key, task_seq, value) VALUES (?, ?, ?)');
      for (const [key, value] of Object.entries(snapshot.tags)) insertTag.run(key, seq, value);
    });
  }

  async get(id: string): Promise<StoredTask | undefined> {
    const row = this.run(() => this.statement(`SELECT ${STORED_TASK_COLUMNS} FROM tasks WHERE id = ?`).get(id)) as StoredRow | undefined;
    return row ? toStoredTask(row) : undefined;
  }

  async list(query: TaskListQuery): Promise<TaskListPage> {
    const after = query.pageToken === undefined ? undefined : decodePageToken(query.pageToken);
    const { sql, params } = listStatement(query, after);
    const rows = this.run(() => this.statement(sql).all(...params)) as ListRow[];
    const more = rows.length > query.pageSize;
    const page = more ? rows.slice(0, query.pageSize) : rows;
    return {
      // Lists feed the views: the control fields stay out.
      tasks: page.map((row) => (query.fields === 'minimal' ? { id: row.id, state: row.state } : toRecord(row))),
      ...(more ? { nextPageToken: encodePageToken(page[page.length - 1].seq) } : {}),
    };
  }

  async findByState(states: readonly TesState[], limit: number): Promise<StoredTask[]> {
    if (states.length === 0 || limit < 1) return [];
    const { sql, params } = findByStateStatement(states, limit);
    const rows = this.run(() => this.statement(sql).all(...params)) as StoredRow[];
    return rows.map(toStoredTask);
  }

  patch(id: string, patch: TaskPatch): Promise<PatchResult> {
    const snapshot = structuredClone(patch);
    // Read, check and write inside the batch's IMMEDIATE transaction: no other writer, in this process or another,
    // slips in between. Patches never change name or tags, so the name column and task_tags stay as they are.
    return this.write((): PatchResult => {
      const row = this.statement(`SELECT ${STORED_TASK_COLUMNS} FROM tasks WHERE id = ?`).get(id) as StoredRow | undefined;
      if (!row) return { applied: false, reason: 'missing' };
      const result = applyTaskPatch(toStoredTask(row), snapshot);
      if (!result.applied) return result;
      const { state, control } = result.task;
      this.statement(
        `UPDATE tasks SET state = ?, doc = ?, attempt = ?, update_seq = ?, lease_holder = ?, lease_until = ?, lease_token = ?,
           backend_ref = ?, version = version + 1 WHERE seq = ?`,
      ).run(
        state,
        recordJson(result.task),
        control.attempt,
        control.update_seq,
        // No lease (a terminal state drops it): NULL holder and token, until 0.
        control.lease?.holder ?? null,
        control.lease?.until ?? 0,
        control.lease?.token ?? null,
        control.backend_ref === undefined ? null : JSON.stringify(control.backend_ref),
        row.seq,
      );
      return result;
    });
  }

  claimNext(holder: string, leaseMs: number, options: ClaimOptions = {}): Promise<StoredTask | undefined> {
    return this.write(() => {
      const now = Date.now();
      const params = { holder, until: now + leaseMs, token: randomUUID(), now: new Date(now).toISOString(), skip: JSON.stringify(options.skip ?? []) };
      const [row] = this.statement(CLAIM_NEXT_SQL).all(params) as StoredRow[];
      return row ? toStoredTask(row) : undefined;
    });
  }

  renewLeases(holder: string, leaseMs: number): Promise<HeldTask[]> {
    return this.write(() => this.statement(RENEW_LEASES_SQL).all({ holder, until: Date.now() + leaseMs }) as HeldTask[]);
  }

  async heldBy(holder: string): Promise<HeldTask[]> {
    return this.run(() => this.statement(HELD_BY_SQL).all({ holder })) as HeldTask[];
  }

  async countHeld(holder: string): Promise<number> {
    return (this.run(() => this.statement(COUNT_HELD_SQL).get({ holder })) as { n: number }).n;
  }

  async findExpiredLeases(now: number, limit: number): Promise<StoredTask[]> {
    if (limit < 1) return [];
    const rows = this.run(() => this.statement(EXPIRED_LEASES_SQL).all({ now, limit })) as StoredRow[];
    return rows.map(toStoredTask);
  }

  takeOver(id: string, expectedToken: string | undefined, holder: string, leaseMs: number): Promise<StoredTask | undefined> {
    return this.write(() => {
      const now = Date.now();
      const params = { id, expected: expectedToken ?? null, now, holder, until: now + leaseMs, token: randomUUID() };
      const [row] = this.statement(TAKE_OVER_SQL).all(params) as StoredRow[];
      return row ? toStoredTask(row) : undefined;
    });
  }

  releaseLease(id: string, token: string): Promise<boolean> {
    return this.write(() => this.statement(RELEASE_LEASE_SQL).run({ id, token }).changes > 0);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Writes queued before close still commit; their promises settle as usual.
    this.writes.flush();
    this.closed = true;
    this.statements.clear();
    this.db.close();
  }

  /** Queues a write for the next group commit; refused once the store is closed. */
  private write<T>(work: () => T): Promise<T> {
    if (this.closed) return Promise.reject(storeClosed());
    return this.writes.enqueue(work);
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

  /** Runs a synchronous read, refusing after close and turning SQLite errors into domain errors. */
  private run<T>(work: () => T): T {
    if (this.closed) throw storeClosed();
    try {
      return work();
    } catch (err) {
      throw toDomainError(err);
    }
  }
}

/** The doc column: TaskRecord fields only; the control fields have their own columns. */
function recordJson(task: TaskRecord | StoredTask): string {
  return JSON.stringify({ ...task, control: undefined });
}

function toRecord(row: ListRow): TaskRecord {
  const task = JSON.parse(row.doc) as TaskRecord;
  task.state = row.state;
  return task;
}

function toStoredTask(row: StoredRow): StoredTask {
  const control: TaskControl = { attempt: row.attempt, update_seq: row.update_seq };
  if (row.lease_holder !== null) control.lease = { holder: row.lease_holder, until: row.lease_until, token: row.lease_token ?? '' };
  if (row.backend_ref !== null) control.backend_ref = JSON.parse(row.backend_ref) as BackendRef;
  return { ...toRecord(row), control };
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

/** SQLite errors become domain errors at this edge; anything else passes through. */
function toDomainError(err: unknown): unknown {
  const code = sqliteCode(err);
  if (code === undefined) return err;
  const busy = code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED');
  return new DomainError(busy ? ErrorCode.Unavailable : ErrorCode.Internal, `task store: ${String((err as { message?: unknown }).message)} (${code})`, busy);
}

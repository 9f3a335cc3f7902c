import type Database from 'better-sqlite3';
import type { TaskScope } from '../../domain/principal';
import type { PatchResult, TaskPatch } from '../../domain/task-patch';
import { StoredTask, TaskRecord, TaskView, TesState } from '../../domain/tes-task';
import type { ClaimOptions, HeldTask, TaskListPage, TaskListQuery, TaskRepository, ViewedTask } from '../task-repository';
import {
  COUNT_HELD_SQL,
  decodePageToken,
  encodePageToken,
  EXPIRED_LEASES_SQL,
  findByStateStatement,
  getBasicStatement,
  getFullStatement,
  getMinimalStatement,
  getStoredStatement,
  HELD_BY_SQL,
  listStatement,
  SqlStatement,
} from './sqlite-task-queries';
import { openTaskDatabase } from './sqlite-schema';
import { ListRow, storeClosed, StoredRow, storedTaskJson, toDomainError, toRecord, toStoredTask } from './sqlite-task-rows';
import type { WriteArgs, WriteName, WriteResult } from './sqlite-task-writes';
import { StatementCache } from './sqlite-statement-cache';
import { SqliteWriter } from './sqlite-writer';

/**
 * The embedded task store: one SQLite file in WAL mode, fsynced on every commit. Several processes may share the
 * file: every write is one IMMEDIATE transaction, and the lease operations are single statements inside it.
 *
 * Reads run on this thread's connection (WAL: they never wait for a writer). Writes go to a writer thread with its
 * own connection (sqlite-writer.worker.ts), which commits them in group-commit batches; each promise settles after
 * its batch's commit, so the event loop never waits for an fsync or a busy file.
 */
export class SqliteTaskRepository implements TaskRepository {
  private readonly db: Database.Database;
  private readonly statements: StatementCache;
  private readonly writer: SqliteWriter;
  /** This repository's writes not yet settled: close waits for them (the writer may serve other repositories). */
  private readonly inFlight = new Set<Promise<unknown>>();
  private closed = false;

  constructor(file: string) {
    // Opened (created, migrated) here first and synchronously, so reads work at once and errors throw here.
    this.db = openTaskDatabase(file);
    this.statements = new StatementCache(this.db);
    this.writer = SqliteWriter.acquire(file);
  }

  insert(task: TaskRecord, owner: string): Promise<void> {
    // What is sent is taken now (the message leaves at the end of this event-loop turn), so later changes to
    // `task` do not leak in. The document is serialised once, here; control fields a caller's object may carry
    // are not stored (a new task has none).
    return this.write('insert', {
      id: task.id,
      state: task.state,
      name: task.name ?? null,
      creationTime: task.creation_time,
      owner,
      tags: task.tags ? Object.entries(task.tags) : [],
      doc: 'control' in task ? storedTaskJson(task as StoredTask) : JSON.stringify(task),
    });
  }

  async get(id: string, scope: TaskScope): Promise<StoredTask | undefined> {
    const row = this.one<StoredRow>(getStoredStatement(id, scope));
    return row ? toStoredTask(row) : undefined;
  }

  async getUnscoped(id: string): Promise<StoredTask | undefined> {
    return this.get(id, { all: true });
  }

  async getForView(id: string, view: TaskView, scope: TaskScope): Promise<ViewedTask | undefined> {
    if (view === TaskView.MINIMAL) return this.one<ViewedTask>(getMinimalStatement(id, scope));
    const row = this.one<ListRow>(view === TaskView.BASIC ? getBasicStatement(id, scope) : getFullStatement(id, scope));
    return row ? toRecord(row) : undefined;
  }

  async list(scope: TaskScope, query: TaskListQuery): Promise<TaskListPage> {
    const after = query.pageToken === undefined ? undefined : decodePageToken(query.pageToken);
    const { sql, params } = listStatement(scope, query, after);
    const rows = this.run(() => this.statements.get(sql).all(...params)) as ListRow[];
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
    const rows = this.run(() => this.statements.get(sql).all(...params)) as StoredRow[];
    return rows.map(toStoredTask);
  }

  patch(id: string, patch: TaskPatch): Promise<PatchResult> {
    return this.write('patch', id, structuredClone(patch));
  }

  claimNext(holder: string, leaseMs: number, options: ClaimOptions = {}): Promise<StoredTask | undefined> {
    return this.write('claimNext', holder, leaseMs, [...(options.skip ?? [])]);
  }

  renewLeases(holder: string, leaseMs: number): Promise<HeldTask[]> {
    return this.write('renewLeases', holder, leaseMs);
  }

  async heldBy(holder: string): Promise<HeldTask[]> {
    return this.run(() => this.statements.get(HELD_BY_SQL).all({ holder })) as HeldTask[];
  }

  async countHeld(holder: string): Promise<number> {
    return (this.run(() => this.statements.get(COUNT_HELD_SQL).get({ holder })) as { n: number }).n;
  }

  async findExpiredLeases(now: number, limit: number): Promise<StoredTask[]> {
    if (limit < 1) return [];
    const rows = this.run(() => this.statements.get(EXPIRED_LEASES_SQL).all({ now, limit })) as StoredRow[];
    return rows.map(toStoredTask);
  }

  takeOver(id: string, expectedToken: string | undefined, holder: string, leaseMs: number): Promise<StoredTask | undefined> {
    return this.write('takeOver', id, expectedToken, holder, leaseMs);
  }

  releaseLease(id: string, token: string): Promise<boolean> {
    return this.write('releaseLease', id, token);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Writes sent before close still commit; their promises settle as usual.
    await Promise.allSettled([...this.inFlight]);
    await this.writer.release();
    this.statements.clear();
    this.db.close();
  }

  /** Sends a write to the writer thread; refused once the store is closed. */
  private write<K extends WriteName>(name: K, ...args: WriteArgs<K>): Promise<WriteResult<K>> {
    if (this.closed) return Promise.reject(storeClosed());
    const written = this.writer.write(name, ...args);
    this.inFlight.add(written);
    const settled = () => this.inFlight.delete(written);
    written.then(settled, settled);
    return written;
  }

  private one<T>(statement: SqlStatement): T | undefined {
    return this.run(() => this.statements.get(statement.sql).get(...statement.params)) as T | undefined;
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

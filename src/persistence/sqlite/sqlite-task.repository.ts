import type Database from 'better-sqlite3';
import type { Logger } from '../../common/logger';
import type { TaskScope } from '../../domain/principal';
import type { PatchResult, TaskPatch } from '../../domain/task-patch';
import { contentBytes, StoredTask, TaskRecord, TaskView, TesState } from '../../domain/tes-task';
import {
  ClaimOptions,
  DEFAULT_FULL_PAGE_BYTES,
  HeldTask,
  TaskListPage,
  TaskListQuery,
  TaskProgressView,
  TaskRepository,
  ViewedTask,
} from '../task-repository';
import {
  COUNT_HELD_SQL,
  decodePageToken,
  encodePageToken,
  BASIC_EXECUTOR_LOGS_OF_SQL,
  BASIC_REQUESTS_OF_SQL,
  EXECUTOR_LOGS_BASIC_SQL,
  EXECUTOR_LOGS_OF_SQL,
  EXECUTOR_LOGS_SQL,
  EXPIRED_LEASES_SQL,
  findByStateStatement,
  getBasicStatement,
  getFullStatement,
  getMinimalStatement,
  getStoredStatement,
  HELD_BY_SQL,
  listStatement,
  REQUESTS_OF_SQL,
  SqlStatement,
} from './sqlite-task-queries';
import { openTaskDatabase } from './sqlite-schema';
import {
  assembleLogs,
  ExecutorLogRow,
  executorLogRows,
  ListRow,
  logsJson,
  ProgressRow,
  requestJson,
  storeClosed,
  StoredRow,
  toControl,
  toDomainError,
  toRecord,
  toStoredTask,
} from './sqlite-task-rows';
import type { WriteArgs, WriteName, WriteResult } from './sqlite-task-writes';
import { StatementCache } from './sqlite-statement-cache';
import { SqliteWriter } from './sqlite-writer';

/** How many of the rows (sizes in `bytes`) fit a page of `budget` bytes: at least one, so paging always moves on. */
function withinBudget(rows: ReadonlyArray<{ bytes: number }>, budget: number): number {
  let total = 0;
  for (let i = 0; i < rows.length; i++) {
    total += rows[i].bytes;
    if (total > budget && i > 0) return i;
  }
  return rows.length;
}

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

  private readonly fullPageBytes: number;

  /**
   * `logger` hears of store faults (a full disk, a removed or corrupted file), once each; `fullPageBytes` is the byte
   * budget of a full list page (store.full_page_bytes).
   */
  constructor(
    private readonly file: string,
    options: { logger?: Logger; fullPageBytes?: number } = {},
  ) {
    this.fullPageBytes = options.fullPageBytes ?? DEFAULT_FULL_PAGE_BYTES;
    const logger = options.logger;
    // Opened (created, migrated, checked) here first and synchronously, so reads work at once and errors throw here.
    this.db = openTaskDatabase(file);
    this.statements = new StatementCache(this.db);
    this.writer = SqliteWriter.acquire(file, logger);
  }

  insert(task: TaskRecord, owner: string): Promise<void> {
    // What is sent is taken now (the message leaves at the end of this event-loop turn), so later changes to
    // `task` do not leak in. The request and logs are serialised once, here; control fields a caller's object may
    // carry are not stored (a new task has none).
    return this.write('insert', {
      id: task.id,
      state: task.state,
      name: task.name ?? null,
      creationTime: task.creation_time,
      owner,
      tags: task.tags ? Object.entries(task.tags) : [],
      request: requestJson(task),
      contentBytes: contentBytes(task),
      logs: logsJson(task.logs ?? []),
      executorLogs: executorLogRows(0, task.logs ?? []).map((row) => [row.log_index, row.executor_index, row.log]),
    });
  }

  async get(id: string, scope: TaskScope): Promise<StoredTask | undefined> {
    const row = this.one<StoredRow>(getStoredStatement(id, scope));
    return row ? toStoredTask(row, this.executorLogs(EXECUTOR_LOGS_SQL, row.seq)) : undefined;
  }

  async getUnscoped(id: string): Promise<StoredTask | undefined> {
    return this.get(id, { all: true });
  }

  async getForView(id: string, view: TaskView, scope: TaskScope): Promise<ViewedTask | undefined> {
    if (view === TaskView.MINIMAL) return this.one<ViewedTask>(getMinimalStatement(id, scope));
    const basic = view === TaskView.BASIC;
    const row = this.one<ListRow & { request: string }>(basic ? getBasicStatement(id, scope) : getFullStatement(id, scope));
    return row ? toRecord(row, row.request, this.executorLogs(basic ? EXECUTOR_LOGS_BASIC_SQL : EXECUTOR_LOGS_SQL, row.seq)) : undefined;
  }

  async list(scope: TaskScope, query: TaskListQuery): Promise<TaskListPage> {
    const after = query.pageToken === undefined ? undefined : decodePageToken(query.pageToken);
    const { sql, params } = listStatement(scope, query, after);
    const rows = this.run(() => this.statements.get(sql).all(...params)) as Array<ListRow & { bytes: number }>;
    const fitting = query.fields === 'minimal' ? Math.min(rows.length, query.pageSize) : withinBudget(rows.slice(0, query.pageSize), this.fullPageBytes);
    const more = rows.length > fitting;
    const page = rows.slice(0, fitting);
    return {
      // Lists feed the views: the control fields stay out.
      tasks: query.fields === 'minimal' ? page.map((row) => ({ id: row.id, state: row.state })) : this.records(page, query.fields === 'basic'),
      ...(more ? { nextPageToken: encodePageToken(page[page.length - 1].seq) } : {}),
    };
  }

  async findByState(states: readonly TesState[], limit: number): Promise<TaskProgressView[]> {
    if (states.length === 0 || limit < 1) return [];
    const { sql, params } = findByStateStatement(states, limit);
    const rows = this.run(() => this.statements.get(sql).all(...params)) as ProgressRow[];
    const executorLogs = this.executorLogsOf(rows.map((row) => row.seq));
    return rows.map((row) => ({ id: row.id, state: row.state, logs: assembleLogs(row.logs, executorLogs.get(row.seq) ?? []), control: toControl(row) }));
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
    const executorLogs = this.executorLogsOf(rows.map((row) => row.seq));
    return rows.map((row) => toStoredTask(row, executorLogs.get(row.seq) ?? []));
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

  /** The records of a full page's rows: their requests and executor logs read for these rows only. */
  private records(rows: ReadonlyArray<ListRow>, basic: boolean): TaskRecord[] {
    const seqs = JSON.stringify(rows.map((row) => row.seq));
    const requests = new Map(
      (this.run(() => this.statements.get(basic ? BASIC_REQUESTS_OF_SQL : REQUESTS_OF_SQL).all(seqs)) as Array<{ task_seq: number; request: string }>).map((r) => [r.task_seq, r.request]),
    );
    const executorLogs = this.executorLogsOf(rows.map((row) => row.seq), basic);
    return rows.map((row) => toRecord(row, requests.get(row.seq) ?? '{}', executorLogs.get(row.seq) ?? []));
  }

  private executorLogs(sql: string, seq: number): ExecutorLogRow[] {
    return this.run(() => this.statements.get(sql).all(seq)) as ExecutorLogRow[];
  }

  /** The executor logs of several tasks, by task seq, each in order. */
  private executorLogsOf(seqs: readonly number[], basic = false): Map<number, ExecutorLogRow[]> {
    const bySeq = new Map<number, ExecutorLogRow[]>();
    if (seqs.length === 0) return bySeq;
    const sql = basic ? BASIC_EXECUTOR_LOGS_OF_SQL : EXECUTOR_LOGS_OF_SQL;
    for (const row of this.run(() => this.statements.get(sql).all(JSON.stringify(seqs))) as ExecutorLogRow[]) {
      const list = bySeq.get(row.task_seq) ?? [];
      if (list.length === 0) bySeq.set(row.task_seq, list);
      list.push(row);
    }
    return bySeq;
  }

  private one<T>(statement: SqlStatement): T | undefined {
    return this.run(() => this.statements.get(statement.sql).get(...statement.params)) as T | undefined;
  }

  /** Runs a synchronous read, refusing after close and turning SQLite errors into domain errors. */
  private run<T>(work: () => T): T {
    if (this.closed) throw storeClosed();
    const refused = this.writer.readsRefusedBy;
    if (refused) throw refused;
    try {
      return work();
    } catch (err) {
      const failure = toDomainError(err, this.file);
      this.writer.noteFailure(failure);
      throw failure;
    }
  }
}

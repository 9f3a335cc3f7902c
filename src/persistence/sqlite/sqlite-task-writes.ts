import type Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { DomainError, ErrorCode } from '../../domain/domain-error';
import { applyTaskPatch, PatchOp, PatchResult, TaskPatch } from '../../domain/task-patch';
import { logIndexOf, StoredTask, TesState } from '../../domain/tes-task';
import type { HeldTask } from '../task-repository';
import {
  CLAIM_NEXT_SQL,
  EXECUTOR_LOGS_SQL,
  PROGRESS_COLUMNS,
  RELEASE_LEASE_SQL,
  RENEW_LEASES_SQL,
  TAKE_OVER_SQL,
  UPSERT_EXECUTOR_LOG_SQL,
} from './sqlite-task-queries';
import { ExecutorLogRow, executorLogRows, logsJson, ProgressRow, sqliteCode, toControl, toProgress, toStoredTask } from './sqlite-task-rows';
import { StatementCache } from './sqlite-statement-cache';

/** What an insert writes: the columns, and the request and logs serialised once by the caller. */
export interface NewTaskRow {
  id: string;
  state: TesState;
  name: string | null;
  creationTime: string;
  owner: string;
  /** [key, value] pairs. */
  tags: Array<[string, string]>;
  /** task_requests.request: everything of the record but id, state and logs. */
  request: string;
  /** tasks.logs: the logs without executor logs. */
  logs: string;
  /** The size of the inputs' contents (UTF-8 bytes): what a BASIC page leaves out. */
  contentBytes: number;
  /** The executor logs, log index and executor index each, as JSON. */
  executorLogs: Array<[number, number, string]>;
}

/**
 * The task store's writes, each synchronous and meant to run inside a group-commit batch (an IMMEDIATE
 * transaction), on the connection the writer thread owns.
 */
export class SqliteTaskWrites {
  private readonly statements: StatementCache;

  constructor(db: Database.Database) {
    this.statements = new StatementCache(db);
  }

  insert(task: NewTaskRow): void {
    let seq: number;
    try {
      const inserted = this.statements.get('INSERT INTO tasks (id, state, name, creation_time, owner, logs, request_bytes, content_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
        .run(task.id, task.state, task.name, task.creationTime, task.owner, task.logs, Buffer.byteLength(task.request), task.contentBytes);
      seq = Number(inserted.lastInsertRowid);
    } catch (err) {
      if (sqliteCode(err) === 'SQLITE_CONSTRAINT_UNIQUE') throw new DomainError(ErrorCode.Conflict, `task ${task.id} already exists`);
      throw err;
    }
    this.statements.get('INSERT INTO task_requests (task_seq, request) VALUES (?, ?)').run(seq, task.request);
    const insertLog = this.statements.get(UPSERT_EXECUTOR_LOG_SQL);
    for (const [logIndex, executorIndex, log] of task.executorLogs) insertLog.run(seq, logIndex, executorIndex, log);
    if (task.tags.length === 0) return;
    const insertTag = this.statements.get('INSERT INTO task_tags (key, task_seq, value) VALUES (?, ?, ?)');
    for (const [key, value] of task.tags) insertTag.run(key, seq, value);
  }

  /**
   * Read, check and write inside the batch's IMMEDIATE transaction: no other writer, in this process or another,
   * slips in between. A patch reads and rewrites the task's progress row only (state, control, the logs without
   * executor logs); each set_executor_log writes that one executor's row. The request is never read nor written,
   * so an update's work is the same for a task of one executor and of thousands, with or without large contents.
   */
  patch(id: string, patch: TaskPatch): PatchResult {
    const row = this.statements.get(`SELECT ${PROGRESS_COLUMNS} FROM tasks WHERE id = ?`).get(id) as ProgressRow | undefined;
    if (!row) return { applied: false, reason: 'missing' };
    const executorOps = patch.ops.filter((op): op is Extract<PatchOp, { op: 'set_executor_log' }> => op.op === 'set_executor_log');
    const result = applyTaskPatch(toProgress(row), { ...patch, ops: patch.ops.filter((op) => op.op !== 'set_executor_log') });
    if (!result.applied) return result;
    const { state, control, logs } = result.task;
    const upsertLog = this.statements.get(UPSERT_EXECUTOR_LOG_SQL);
    const logIndex = logIndexOf(patch.attempt);
    for (const op of executorOps) upsertLog.run(row.seq, logIndex, op.index, JSON.stringify(op.fields));
    if (patch.next_attempt) {
      for (const log of executorLogRows(row.seq, [patch.next_attempt.log], logIndexOf(control.attempt))) upsertLog.run(log.task_seq, log.log_index, log.executor_index, log.log);
    }
    this.statements.get(
      `UPDATE tasks SET state = ?, logs = ?, attempt = ?, update_seq = ?, lease_holder = ?, lease_until = ?, lease_token = ?,
         backend_ref = ?, version = version + 1 WHERE seq = ?`,
    ).run(
      state,
      logsJson(logs),
      control.attempt,
      control.update_seq,
      // No lease (a terminal state drops it): NULL holder and token, until 0.
      control.lease?.holder ?? null,
      control.lease?.until ?? 0,
      control.lease?.token ?? null,
      control.backend_ref === undefined ? null : JSON.stringify(control.backend_ref),
      row.seq,
    );
    return { applied: true, task: { id: row.id, state, control } };
  }

  claimNext(holder: string, leaseMs: number, skip: readonly string[]): StoredTask | undefined {
    const now = Date.now();
    const params = { holder, until: now + leaseMs, token: randomUUID(), now: new Date(now).toISOString(), skip: JSON.stringify(skip) };
    const [row] = this.statements.get(CLAIM_NEXT_SQL).all(params) as ProgressRow[];
    return row ? this.whole(row) : undefined;
  }

  renewLeases(holder: string, leaseMs: number): HeldTask[] {
    return this.statements.get(RENEW_LEASES_SQL).all({ holder, until: Date.now() + leaseMs }) as HeldTask[];
  }

  takeOver(id: string, expectedToken: string | undefined, holder: string, leaseMs: number): StoredTask | undefined {
    const now = Date.now();
    const params = { id, expected: expectedToken ?? null, now, holder, until: now + leaseMs, token: randomUUID() };
    const [row] = this.statements.get(TAKE_OVER_SQL).all(params) as ProgressRow[];
    return row ? this.whole(row) : undefined;
  }

  releaseLease(id: string, token: string): boolean {
    return this.statements.get(RELEASE_LEASE_SQL).run({ id, token }).changes > 0;
  }

  /** The whole task of a row a claim or take-over returned: once per run, the backend needs the request. */
  private whole(row: ProgressRow): StoredTask {
    const { request } = this.statements.get('SELECT request FROM task_requests WHERE task_seq = ?').get(row.seq) as { request: string };
    const executorLogs = this.statements.get(EXECUTOR_LOGS_SQL).all(row.seq) as ExecutorLogRow[];
    return toStoredTask({ ...row, request }, executorLogs);
  }
}

/** The names of the writes, as the writer thread is asked for them. */
export type WriteName = 'insert' | 'patch' | 'claimNext' | 'renewLeases' | 'takeOver' | 'releaseLease';

export type WriteArgs<K extends WriteName> = Parameters<SqliteTaskWrites[K]>;
export type WriteResult<K extends WriteName> = ReturnType<SqliteTaskWrites[K]>;

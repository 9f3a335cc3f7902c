import { DomainError, ErrorCode } from '../../domain/domain-error';
import type { TaskProgress } from '../../domain/task-patch';
import type { BackendRef, StoredTask, TaskControl, TaskRecord, TesExecutorLog, TesState, TesTaskLog, TesTaskRequest } from '../../domain/tes-task';

/** A list or view row: id and state; `logs` (tasks.logs) on full reads. */
export interface ListRow {
  seq: number;
  id: string;
  state: TesState;
  logs: string;
}

/** A row read with PROGRESS_COLUMNS: what a patch reads and changes. */
export interface ProgressRow extends ListRow {
  attempt: number;
  update_seq: number;
  lease_holder: string | null;
  lease_until: number;
  lease_token: string | null;
  backend_ref: string | null;
  owner: string;
}

/** A row read with STORED_TASK_COLUMNS: the progress and the request. */
export interface StoredRow extends ProgressRow {
  request: string;
}

/** One executor's log, its own row (task_executor_logs). */
export interface ExecutorLogRow {
  task_seq: number;
  log_index: number;
  executor_index: number;
  log: string;
}

/** What an insert stores in task_requests: the record without what the tasks row and the log rows hold. */
export function requestJson(task: TaskRecord): string {
  const { id: _id, state: _state, logs: _logs, control: _control, ...request } = task as StoredTask;
  return JSON.stringify(request);
}

/** tasks.logs: the attempts' logs without their executor logs (those are rows of their own). */
export function logsJson(logs: readonly TesTaskLog[]): string {
  return JSON.stringify(logs.map(({ logs: _executors, ...log }) => log));
}

/** The executor logs of `logs` as rows, for an insert or a new attempt. */
export function executorLogRows(taskSeq: number, logs: readonly TesTaskLog[], fromIndex = 0): ExecutorLogRow[] {
  return logs.flatMap((log, offset) =>
    (log?.logs ?? []).map((executor, executorIndex) => ({ task_seq: taskSeq, log_index: fromIndex + offset, executor_index: executorIndex, log: JSON.stringify(executor ?? {}) })),
  );
}

/**
 * The logs of a task from tasks.logs and its executor log rows (in (log_index, executor_index) order); an index
 * without a row is an empty log, as a patch that writes executor 3 first leaves 0 to 2.
 */
export function assembleLogs(logs: string, executorRows: readonly ExecutorLogRow[]): TesTaskLog[] {
  const assembled = (JSON.parse(logs) as TesTaskLog[]).map((log) => ({ ...log, logs: [] as TesExecutorLog[] }));
  for (const row of executorRows) {
    const log = (assembled[row.log_index] ??= { logs: [], outputs: [], system_logs: [] });
    while (log.logs.length < row.executor_index) log.logs.push({});
    log.logs[row.executor_index] = JSON.parse(row.log) as TesExecutorLog;
  }
  return assembled;
}

export function toControl(row: ProgressRow): TaskControl {
  const control: TaskControl = { owner: row.owner, attempt: row.attempt, update_seq: row.update_seq };
  if (row.lease_holder !== null) control.lease = { holder: row.lease_holder, until: row.lease_until, token: row.lease_token ?? '' };
  if (row.backend_ref !== null) control.backend_ref = JSON.parse(row.backend_ref) as BackendRef;
  return control;
}

/** A task as a view reads it: the request (whole, or cut for BASIC), id, state and the assembled logs. */
export function toRecord(row: ListRow, request: string, executorRows: readonly ExecutorLogRow[]): TaskRecord {
  return { ...(JSON.parse(request) as TesTaskRequest & { creation_time: string }), id: row.id, state: row.state, logs: assembleLogs(row.logs, executorRows) };
}

export function toStoredTask(row: StoredRow, executorRows: readonly ExecutorLogRow[]): StoredTask {
  return { ...toRecord(row, row.request, executorRows), control: toControl(row) };
}

/** A task's progress part, as a patch reads it (executor logs are left out: a patch writes them by their rows). */
export function toProgress(row: ProgressRow): TaskProgress {
  return { state: row.state, logs: assembleLogs(row.logs, []), control: toControl(row) };
}

/**
 * The SQLite result code of an error from better-sqlite3. Matched by shape, not instanceof: the native addon keeps
 * the SqliteError class it was first given, which is not this module's copy (nor this realm's Error) when modules
 * are loaded more than once, as jest does per test file.
 */
export function sqliteCode(err: unknown): string | undefined {
  const { name, code } = (typeof err === 'object' && err !== null ? err : {}) as { name?: unknown; code?: unknown };
  return name === 'SqliteError' && typeof code === 'string' ? code : undefined;
}

export function storeClosed(): DomainError {
  return new DomainError(ErrorCode.Unavailable, 'the task store is closed');
}

/** SQLite errors become domain errors at this edge; anything else passes through. `file` names the store in them. */
export function toDomainError(err: unknown, file?: string): unknown {
  const code = sqliteCode(err);
  if (code === undefined) return err;
  const message = String((err as { message?: unknown }).message);
  const where = file ? ` ${file}` : '';
  if (code === 'SQLITE_FULL') return storeFull(file, `${message} (${code})`);
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') return storeCorrupt(file, `${message} (${code})`);
  if (code === 'SQLITE_READONLY_DBMOVED') return storeReplaced(file, 'SQLite says it was moved since it was opened');
  const busy = code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED');
  return new DomainError(busy ? ErrorCode.Unavailable : ErrorCode.Internal, `task store${where}: ${message} (${code})`, busy);
}

export function storeFull(file: string | undefined, detail: string): DomainError {
  const where = file ? ` (${file})` : '';
  return new DomainError(ErrorCode.StoreFull, `the task store is full: no space left on the device of its file${where}: ${detail}; creates are refused until space is freed under data_dir`);
}

const CORRUPTED = 'is corrupted';

export function storeCorrupt(file: string | undefined, detail: string): DomainError {
  return new DomainError(ErrorCode.StoreBroken, `the task store's file ${file ?? ''} ${CORRUPTED}: ${detail}; the store refuses reads and writes until the file is restored and tesp restarted`);
}

/** Whether a store fault is corruption (nothing read can be trusted), told by its message: it crosses threads. */
export function isCorruption(err: DomainError): boolean {
  return err.code === ErrorCode.StoreBroken && err.message.includes(` ${CORRUPTED}: `);
}

export function storeReplaced(file: string | undefined, detail: string): DomainError {
  return new DomainError(
    ErrorCode.StoreBroken,
    `the task store's file ${file ?? ''} was removed or replaced while tesp runs (${detail}); writes are refused, since they would be lost, until tesp is restarted`,
  );
}

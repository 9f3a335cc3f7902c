import { DomainError, ErrorCode } from '../../domain/domain-error';
import type { BackendRef, StoredTask, TaskControl, TaskRecord, TesState } from '../../domain/tes-task';

/** A list row: doc only on full pages. */
export interface ListRow {
  seq: number;
  id: string;
  state: TesState;
  doc: string;
}

/** A row read with STORED_TASK_COLUMNS. */
export interface StoredRow extends ListRow {
  attempt: number;
  update_seq: number;
  lease_holder: string | null;
  lease_until: number;
  lease_token: string | null;
  backend_ref: string | null;
  owner: string;
}

/** The doc column of a stored task: TaskRecord fields only; the control fields have their own columns. */
export function storedTaskJson(task: StoredTask): string {
  const { control: _control, ...record } = task;
  return JSON.stringify(record);
}

export function toRecord(row: ListRow): TaskRecord {
  const task = JSON.parse(row.doc) as TaskRecord;
  task.state = row.state;
  return task;
}

export function toStoredTask(row: StoredRow): StoredTask {
  const control: TaskControl = { owner: row.owner, attempt: row.attempt, update_seq: row.update_seq };
  if (row.lease_holder !== null) control.lease = { holder: row.lease_holder, until: row.lease_until, token: row.lease_token ?? '' };
  if (row.backend_ref !== null) control.backend_ref = JSON.parse(row.backend_ref) as BackendRef;
  const task = toRecord(row) as StoredTask;
  task.control = control;
  return task;
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

/** SQLite errors become domain errors at this edge; anything else passes through. */
export function toDomainError(err: unknown): unknown {
  const code = sqliteCode(err);
  if (code === undefined) return err;
  const busy = code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED');
  return new DomainError(busy ? ErrorCode.Unavailable : ErrorCode.Internal, `task store: ${String((err as { message?: unknown }).message)} (${code})`, busy);
}

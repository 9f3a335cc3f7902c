import type Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { DomainError, ErrorCode } from '../../domain/domain-error';
import { applyTaskPatch, PatchResult, TaskPatch } from '../../domain/task-patch';
import type { StoredTask, TesState } from '../../domain/tes-task';
import type { HeldTask } from '../task-repository';
import { CLAIM_NEXT_SQL, RELEASE_LEASE_SQL, RENEW_LEASES_SQL, STORED_TASK_COLUMNS, TAKE_OVER_SQL } from './sqlite-task-queries';
import { sqliteCode, StoredRow, storedTaskJson, toStoredTask } from './sqlite-task-rows';
import { StatementCache } from './sqlite-statement-cache';

/** What an insert writes: the columns, and the document serialised once by the caller. */
export interface NewTaskRow {
  id: string;
  state: TesState;
  name: string | null;
  creationTime: string;
  owner: string;
  /** [key, value] pairs. */
  tags: Array<[string, string]>;
  doc: string;
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
      const inserted = this.statements.get('INSERT INTO tasks (id, state, name, creation_time, owner, doc) VALUES (?, ?, ?, ?, ?, ?)')
        .run(task.id, task.state, task.name, task.creationTime, task.owner, task.doc);
      seq = Number(inserted.lastInsertRowid);
    } catch (err) {
      if (sqliteCode(err) === 'SQLITE_CONSTRAINT_UNIQUE') throw new DomainError(ErrorCode.Conflict, `task ${task.id} already exists`);
      throw err;
    }
    if (task.tags.length === 0) return;
    const insertTag = this.statements.get('INSERT INTO task_tags (key, task_seq, value) VALUES (?, ?, ?)');
    for (const [key, value] of task.tags) insertTag.run(key, seq, value);
  }

  /**
   * Read, check and write inside the batch's IMMEDIATE transaction: no other writer, in this process or another,
   * slips in between. Patches never change name or tags, so the name column and task_tags stay as they are.
   */
  patch(id: string, patch: TaskPatch): PatchResult {
    const row = this.statements.get(`SELECT ${STORED_TASK_COLUMNS} FROM tasks WHERE id = ?`).get(id) as StoredRow | undefined;
    if (!row) return { applied: false, reason: 'missing' };
    const result = applyTaskPatch(toStoredTask(row), patch);
    if (!result.applied) return result;
    const { state, control } = result.task;
    this.statements.get(
      `UPDATE tasks SET state = ?, doc = ?, attempt = ?, update_seq = ?, lease_holder = ?, lease_until = ?, lease_token = ?,
         backend_ref = ?, version = version + 1 WHERE seq = ?`,
    ).run(
      state,
      storedTaskJson(result.task),
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
  }

  claimNext(holder: string, leaseMs: number, skip: readonly string[]): StoredTask | undefined {
    const now = Date.now();
    const params = { holder, until: now + leaseMs, token: randomUUID(), now: new Date(now).toISOString(), skip: JSON.stringify(skip) };
    const [row] = this.statements.get(CLAIM_NEXT_SQL).all(params) as StoredRow[];
    return row ? toStoredTask(row) : undefined;
  }

  renewLeases(holder: string, leaseMs: number): HeldTask[] {
    return this.statements.get(RENEW_LEASES_SQL).all({ holder, until: Date.now() + leaseMs }) as HeldTask[];
  }

  takeOver(id: string, expectedToken: string | undefined, holder: string, leaseMs: number): StoredTask | undefined {
    const now = Date.now();
    const params = { id, expected: expectedToken ?? null, now, holder, until: now + leaseMs, token: randomUUID() };
    const [row] = this.statements.get(TAKE_OVER_SQL).all(params) as StoredRow[];
    return row ? toStoredTask(row) : undefined;
  }

  releaseLease(id: string, token: string): boolean {
    return this.statements.get(RELEASE_LEASE_SQL).run({ id, token }).changes > 0;
  }
}

/** The names of the writes, as the writer thread is asked for them. */
export type WriteName = 'insert' | 'patch' | 'claimNext' | 'renewLeases' | 'takeOver' | 'releaseLease';

export type WriteArgs<K extends WriteName> = Parameters<SqliteTaskWrites[K]>;
export type WriteResult<K extends WriteName> = ReturnType<SqliteTaskWrites[K]>;

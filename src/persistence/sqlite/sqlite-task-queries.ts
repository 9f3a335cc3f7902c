import { DomainError, ErrorCode } from '../../domain/domain-error';
import type { TaskScope } from '../../domain/principal';
import { HELD_STATES } from '../../domain/task-state-machine';
import { TesState } from '../../domain/tes-task';
import type { TagFilter, TaskListQuery } from '../task-repository';

export interface SqlStatement {
  sql: string;
  params: unknown[];
}

/** Tag filters beyond this many become EXISTS checks (SQLite joins at most 64 tables). */
const MAX_TAG_JOINS = 16;

/** What a patch reads and changes: state, the logs without executor logs, the control fields; never the request. */
export const PROGRESS_COLUMNS = 'seq, id, state, logs, attempt, update_seq, lease_holder, lease_until, lease_token, backend_ref, owner';

/** A whole task: its progress and its request (FROM WITH_REQUEST). */
export const STORED_TASK_COLUMNS = `${PROGRESS_COLUMNS}, request`;

/** The tasks table with each task's request beside it. */
const WITH_REQUEST = 'tasks JOIN task_requests ON task_seq = seq';

/** The condition that keeps a query inside a caller's scope, on the tasks table (alias `t` or none). */
export function scopeCondition(scope: TaskScope, table = ''): SqlStatement | undefined {
  if (scope.all) return undefined;
  return { sql: `${table ? `${table}.` : ''}owner = ?`, params: [scope.owner] };
}

/** `WHERE id = ?` and the scope's condition, with their parameters. */
export function byIdInScope(id: string, scope: TaskScope): SqlStatement {
  const inScope = scopeCondition(scope);
  return inScope ? { sql: `WHERE id = ? AND ${inScope.sql}`, params: [id, ...inScope.params] } : { sql: 'WHERE id = ?', params: [id] };
}

/** One task at MINIMAL: its columns only. */
export function getMinimalStatement(id: string, scope: TaskScope): SqlStatement {
  const where = byIdInScope(id, scope);
  return { sql: `SELECT id, state FROM tasks ${where.sql}`, params: where.params };
}

/** One task at FULL, without its control fields (its executor logs: EXECUTOR_LOGS_SQL). */
export function getFullStatement(id: string, scope: TaskScope): SqlStatement {
  const where = byIdInScope(id, scope);
  return { sql: `SELECT seq, id, state, logs, request FROM ${WITH_REQUEST} ${where.sql}`, params: where.params };
}

/** One task with its control fields (its executor logs: EXECUTOR_LOGS_SQL). */
export function getStoredStatement(id: string, scope: TaskScope): SqlStatement {
  const where = byIdInScope(id, scope);
  return { sql: `SELECT ${STORED_TASK_COLUMNS} FROM ${WITH_REQUEST} ${where.sql}`, params: where.params };
}

/**
 * One task at BASIC: the request without inputs[].content, cut by SQLite's JSON functions so contents never reach
 * JavaScript (its executor logs: EXECUTOR_LOGS_BASIC_SQL). Absent inputs stay absent.
 */
export function getBasicStatement(id: string, scope: TaskScope): SqlStatement {
  const where = byIdInScope(id, scope);
  return { sql: `SELECT seq, id, state, logs, ${WITHOUT_CONTENT} AS request FROM ${WITH_REQUEST} ${where.sql}`, params: where.params };
}

/** A task's executor logs in order. Parameter: the task's seq. */
export const EXECUTOR_LOGS_SQL = 'SELECT task_seq, log_index, executor_index, log FROM task_executor_logs WHERE task_seq = ? ORDER BY log_index, executor_index';

/** The same without stdout and stderr, which BASIC does not show. */
export const EXECUTOR_LOGS_BASIC_SQL = `SELECT task_seq, log_index, executor_index, json_remove(log, '$.stdout', '$.stderr') AS log
  FROM task_executor_logs WHERE task_seq = ? ORDER BY log_index, executor_index`;

/** The executor logs of several tasks, by task and in order. Parameter: a JSON list of seqs. */
export const EXECUTOR_LOGS_OF_SQL = `SELECT task_seq, log_index, executor_index, log FROM task_executor_logs
  WHERE task_seq IN (SELECT value FROM json_each(?)) ORDER BY task_seq, log_index, executor_index`;

/** The same without stdout and stderr. */
export const BASIC_EXECUTOR_LOGS_OF_SQL = `SELECT task_seq, log_index, executor_index, json_remove(log, '$.stdout', '$.stderr') AS log FROM task_executor_logs
  WHERE task_seq IN (SELECT value FROM json_each(?)) ORDER BY task_seq, log_index, executor_index`;

/** The requests of several tasks. Parameter: a JSON list of seqs. */
export const REQUESTS_OF_SQL = 'SELECT task_seq, request FROM task_requests WHERE task_seq IN (SELECT value FROM json_each(?))';

/** The requests without inputs' contents, cut by SQLite so contents never reach JavaScript. */
const WITHOUT_CONTENT = `CASE WHEN request -> '$.inputs' IS NULL THEN request ELSE json_set(request, '$.inputs',
    (SELECT json_group_array(json_remove(i.value, '$.content') ORDER BY i.key) FROM json_each(request, '$.inputs') i)) END`;

/** The requests of several tasks without their inputs' contents. Parameter: a JSON list of seqs. */
export const BASIC_REQUESTS_OF_SQL = `SELECT task_seq, ${WITHOUT_CONTENT} AS request FROM task_requests WHERE task_seq IN (SELECT value FROM json_each(?))`;

/** One executor's log row, created or merged field by field (RFC 7396), as set_executor_log sets fields. */
export const UPSERT_EXECUTOR_LOG_SQL = `INSERT INTO task_executor_logs (task_seq, log_index, executor_index, log) VALUES (?, ?, ?, json(?))
  ON CONFLICT (task_seq, log_index, executor_index) DO UPDATE SET log = json_patch(log, excluded.log)`;

// The lease statements. Each is one statement, so it is atomic on its own, in this process or across processes
// sharing the file. Held states are literals (enum values), which keeps the statements few and cacheable.
const HELD = HELD_STATES.map((state) => `'${state}'`).join(', ');

/** An empty first log (its executor logs are rows of their own), as a claim creates it when the task has none. */
const EMPTY_LOG = `json_object('outputs', json('[]'), 'system_logs', json('[]'))`;

/**
 * Claims the oldest QUEUED task: attempt 1 starts, logs[0] (created when missing, its system_logs from creation
 * kept) gets its start_time. Parameters: @holder, @until, @token, @now (ISO time), @skip (a JSON list of ids).
 */
export const CLAIM_NEXT_SQL = `UPDATE tasks SET
    state = '${TesState.INITIALIZING}', attempt = 1, update_seq = 0,
    lease_holder = @holder, lease_until = @until, lease_token = @token,
    logs = json_set(json_insert(logs, '$[0]', ${EMPTY_LOG}), '$[0].start_time', @now),
    version = version + 1
  WHERE seq = (SELECT seq FROM tasks WHERE state = '${TesState.QUEUED}' AND id NOT IN (SELECT value FROM json_each(@skip)) ORDER BY seq LIMIT 1)
  RETURNING ${PROGRESS_COLUMNS}`;

// A released lease (lease_until 0) belongs to no one any more: it is neither renewed nor counted, so a heartbeat
// cannot undo a release.
const HOLDS = 'lease_holder = @holder AND lease_until > 0';

/** Parameters: @holder, @until. */
export const RENEW_LEASES_SQL = `UPDATE tasks SET lease_until = @until WHERE ${HOLDS} RETURNING id, state, lease_token AS token`;

/** Parameters: @holder. */
export const HELD_BY_SQL = `SELECT id, state, lease_token AS token FROM tasks WHERE ${HOLDS} ORDER BY seq`;

/** Parameters: @holder. */
export const COUNT_HELD_SQL = `SELECT count(*) AS n FROM tasks WHERE ${HOLDS}`;

/** Held tasks whose lease ended (or that have none: lease_until 0), longest expired first. Parameters: @now, @limit. */
export const EXPIRED_LEASES_SQL = `SELECT ${STORED_TASK_COLUMNS} FROM ${WITH_REQUEST}
  WHERE state IN (${HELD}) AND lease_until < @now ORDER BY lease_until, seq LIMIT @limit`;

/**
 * Compare-and-set on the lease token (IS: an absent token matches NULL). Parameters: @id, @expected, @now,
 * @holder, @until, @token.
 */
export const TAKE_OVER_SQL = `UPDATE tasks SET lease_holder = @holder, lease_until = @until, lease_token = @token
  WHERE id = @id AND state IN (${HELD}) AND lease_until < @now AND lease_token IS @expected
  RETURNING ${PROGRESS_COLUMNS}`;

/** Ends the lease now; holder and token stay, so a take-over still names the token it replaces. Parameters: @id, @token. */
export const RELEASE_LEASE_SQL = `UPDATE tasks SET lease_until = 0 WHERE id = @id AND lease_token = @token AND state IN (${HELD})`;

/**
 * The SELECT for one page of `list`: rows newer than `afterSeq` matching every filter, newest first, one row more
 * than the page so the caller knows whether another page exists. Columns: seq, id, state, and logs and bytes for full pages.
 */
export function listStatement(scope: TaskScope, query: TaskListQuery, afterSeq: number | undefined): SqlStatement {
  const where: string[] = [];
  const params: unknown[] = [];
  const inScope = scopeCondition(scope, 't');
  const tags = distinctTags(query.tags);
  // With tag filters the order and the cursor are on the first tag's task_seq: its index yields rows already
  // newest first, so the planner may drive the query from it and stop after one page. t.seq equals it.
  const seq = tags.length ? 'g0.task_seq' : 't.seq';
  const from = ['tasks t'];
  tags.forEach((tag, i) => {
    const alias = `g${i}`;
    const match = tag.value ? `${alias}.key = ? AND ${alias}.value = ?` : `${alias}.key = ?`;
    if (i < MAX_TAG_JOINS) {
      from.push(`JOIN task_tags ${alias} ON ${alias}.task_seq = t.seq`);
      where.push(match);
    } else {
      where.push(`EXISTS (SELECT 1 FROM task_tags ${alias} WHERE ${match} AND ${alias}.task_seq = t.seq)`);
    }
    params.push(tag.key, ...(tag.value ? [tag.value] : []));
  });
  // The owner is part of the query (and its (owner, seq) index serves it): a page token from another scope only
  // says where to go on, never what may be seen.
  if (inScope) {
    where.push(inScope.sql);
    params.push(...inScope.params);
  }
  if (afterSeq !== undefined) {
    where.push(`${seq} < ?`);
    params.push(afterSeq);
  }
  if (query.state) {
    where.push('t.state = ?');
    params.push(query.state);
  }
  if (query.namePrefix) {
    // A range the name index serves (every string starting with the prefix sorts between the prefix and the prefix
    // followed by the highest code point), then an exact check: a prefix, case-sensitive, no wildcards.
    // The check compares UTF-8 bytes, so astral characters and NULs in names count like any other.
    where.push('t.name >= ? AND t.name < ? AND substr(CAST(t.name AS BLOB), 1, ?) = CAST(? AS BLOB)');
    params.push(query.namePrefix, query.namePrefix + '\u{10FFFF}', Buffer.byteLength(query.namePrefix), query.namePrefix);
  }
  // Full pages read the logs and each task's size (request, logs and executor logs) first, not the requests: the
  // page is cut to its byte budget before any request is read.
  // BASIC pages leave the contents out, and so their size.
  const request = query.fields === 'basic' ? 't.request_bytes - t.content_bytes' : 't.request_bytes';
  const size = `${request} + length(t.logs) + (SELECT coalesce(sum(length(e.log)), 0) FROM task_executor_logs e WHERE e.task_seq = t.seq)`;
  const columns = `${seq} AS seq, t.id, t.state${query.fields === 'minimal' ? '' : `, t.logs, ${size} AS bytes`}`;
  const filter = where.length ? ` WHERE ${where.join(' AND ')}` : '';
  params.push(query.pageSize + 1);
  return { sql: `SELECT ${columns} FROM ${from.join(' ')}${filter} ORDER BY ${seq} DESC LIMIT ?`, params };
}

/**
 * The SELECT for `findByState`: progress columns only (no request), oldest first. Each state is its own ordered range of the (state, seq) index and
 * SQLite merges them (UNION ALL under ORDER BY), so it neither sorts nor reads tasks beyond the limit.
 */
export function findByStateStatement(states: readonly TesState[], limit: number): SqlStatement {
  const wanted = [...new Set(states)];
  const branches = wanted.map(() => `SELECT ${PROGRESS_COLUMNS} FROM tasks WHERE state = ?`);
  return { sql: `${branches.join(' UNION ALL ')} ORDER BY seq ASC LIMIT ?`, params: [...wanted, limit] };
}

function distinctTags(tags: readonly TagFilter[]): TagFilter[] {
  const seen = new Map<string, TagFilter>();
  for (const tag of tags) seen.set(JSON.stringify([tag.key, tag.value || '']), tag);
  return [...seen.values()];
}

// A page token names the last row of the page it came with. It is opaque to clients; only tokens in exactly the
// form issued here are accepted.

export function encodePageToken(lastSeq: number): string {
  return Buffer.from(JSON.stringify({ after: lastSeq })).toString('base64url');
}

export function decodePageToken(token: string): number {
  let after: unknown;
  try {
    const decoded: unknown = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
    after = (decoded as { after?: unknown } | null)?.after;
  } catch {
    after = undefined;
  }
  if (typeof after !== 'number' || !Number.isSafeInteger(after) || after < 1 || encodePageToken(after) !== token) {
    throw new DomainError(ErrorCode.InvalidArgument, 'page_token: not a token this server issued');
  }
  return after;
}

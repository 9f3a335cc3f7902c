import { DomainError, ErrorCode } from '../../common/domain-error';
import type { TesState } from '../../tasks/tes-task';
import type { TagFilter, TaskListQuery } from '../task-repository';

export interface SqlStatement {
  sql: string;
  params: unknown[];
}

/** Tag filters beyond this many become EXISTS checks (SQLite joins at most 64 tables). */
const MAX_TAG_JOINS = 16;

/**
 * The SELECT for one page of `list`: rows newer than `afterSeq` matching every filter, newest first, one row more
 * than the page so the caller knows whether another page exists. Columns: seq, id, state, and doc for full pages.
 */
export function listStatement(query: TaskListQuery, afterSeq: number | undefined): SqlStatement {
  const where: string[] = [];
  const params: unknown[] = [];
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
  const columns = `${seq} AS seq, t.id, t.state${query.fields === 'full' ? ', t.doc' : ''}`;
  const filter = where.length ? ` WHERE ${where.join(' AND ')}` : '';
  params.push(query.pageSize + 1);
  return { sql: `SELECT ${columns} FROM ${from.join(' ')}${filter} ORDER BY ${seq} DESC LIMIT ?`, params };
}

/**
 * The SELECT for `findByState`: oldest first. Each state is its own ordered range of the (state, seq) index and
 * SQLite merges them (UNION ALL under ORDER BY), so it neither sorts nor reads tasks beyond the limit.
 */
export function findByStateStatement(states: readonly TesState[], limit: number): SqlStatement {
  const wanted = [...new Set(states)];
  const branches = wanted.map(() => 'SELECT seq, id, state, doc FROM tasks WHERE state = ?');
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

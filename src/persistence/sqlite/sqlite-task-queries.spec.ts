import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ErrorCode } from '../../domain/domain-error';
import { TesState } from '../../domain/tes-task';
import type { TaskListQuery } from '../task-repository';
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
  SqlStatement,
  TAKE_OVER_SQL,
} from './sqlite-task-queries';
import { SqliteTaskRepository } from './sqlite-task.repository';

describe('page tokens', () => {
  it('round-trip the last seq of a page', () => {
    for (const seq of [1, 257, 2 ** 40]) expect(decodePageToken(encodePageToken(seq))).toBe(seq);
    expect(encodePageToken(5)).toMatch(/^[A-Za-z0-9_-]+$/);
  });

  it('accept only the exact form they were issued in', () => {
    const issued = encodePageToken(42);
    const forged = [
      issued.slice(0, -1),
      `${issued}=`,
      Buffer.from('{"after":42,"x":1}').toString('base64url'),
      Buffer.from('{"after":0}').toString('base64url'),
      Buffer.from('{"after":4.5}').toString('base64url'),
      Buffer.from('{ "after":42}').toString('base64url'),
      Buffer.from('[42]').toString('base64url'),
    ];
    for (const token of forged) {
      let thrown: unknown;
      try {
        decodePageToken(token);
      } catch (err) {
        thrown = err;
      }
      expect([token, thrown]).toEqual([token, expect.objectContaining({ code: ErrorCode.InvalidArgument, message: 'page_token: not a token this server issued' })]);
    }
  });
});

// The plans the queries get on a file the repository built; they must come from indexes (no table scan under a
// filter, no sort where an index gives the order) whatever the statistics say.
describe('SQLite query plans', () => {
  let dir: string;
  let db: Database.Database;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'tesp-sqlite-plans-'));
    const file = path.join(dir, 'tesp.sqlite');
    const repo = new SqliteTaskRepository(file);
    const states = [TesState.COMPLETE, TesState.COMPLETE, TesState.EXECUTOR_ERROR, TesState.QUEUED, TesState.RUNNING];
    await Promise.all(
      Array.from({ length: 3000 }, (_, i) =>
        repo.insert({
          id: `task-${i}`,
          state: states[i % states.length],
          name: `run-${i % 50}-${i}`,
          creation_time: new Date(i * 1000).toISOString(),
          executors: [{ image: 'alpine', command: ['true'] }],
          logs: [],
          tags: { project: `p${i % 10}`, batch: String(i % 300) },
        }, `user-${i % 20}`),
      ),
    );
    // Some tasks under lease, held by a few replicas.
    for (let i = 0; i < 60; i++) await repo.claimNext(`replica-${i % 3}`, 60_000);
    await repo.close();
    db = new Database(file, { readonly: true });
  });

  afterAll(() => {
    db?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const plan = ({ sql, params }: SqlStatement) =>
    (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as Array<{ detail: string }>).map((row) => row.detail).join(' | ');
  const leasePlan = (sql: string, params: Record<string, unknown>) =>
    (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(params) as Array<{ detail: string }>).map((row) => row.detail).join(' | ');
  const list = (query: Partial<TaskListQuery>, after?: number) =>
    plan(listStatement({ all: true }, { tags: [], pageSize: 256, fields: 'minimal', ...query }, after));

  it('walks newest first along the primary key without a filter', () => {
    expect(list({})).toBe('SCAN t');
    // A full page reads each task's size from its executor logs' primary key (not the requests).
    expect(list({ fields: 'full' }, 100)).toBe('SEARCH t USING INTEGER PRIMARY KEY (rowid<?) | CORRELATED SCALAR SUBQUERY 1 | SEARCH e USING PRIMARY KEY (task_seq=?)');
  });

  it('serves a state filter from (state, seq), already in order', () => {
    expect(list({ state: TesState.QUEUED })).toBe('SEARCH t USING INDEX tasks_state_seq (state=?)');
    expect(list({ state: TesState.QUEUED }, 100)).toBe('SEARCH t USING INDEX tasks_state_seq (state=? AND seq<?)');
  });

  it('serves an owner\'s scope from (owner, seq), already in order, also on later pages', () => {
    const alice = { all: false as const, owner: 'user-3' };
    const scoped = (query: Partial<TaskListQuery>, after?: number) => plan(listStatement(alice, { tags: [], pageSize: 256, fields: 'minimal', ...query }, after));
    expect(scoped({})).toBe('SEARCH t USING INDEX tasks_owner_seq (owner=?)');
    expect(scoped({ fields: 'full' }, 100)).toMatch(/^SEARCH t USING INDEX tasks_owner_seq \(owner=\? AND seq<\?\)/);
    expect(scoped({ tags: [{ key: 'project', value: 'p1' }] })).not.toMatch(/SCAN|TEMP B-TREE/);
    expect(scoped({ state: TesState.RUNNING })).not.toMatch(/SCAN|TEMP B-TREE/);
  });

  it('serves a name prefix from a range of the name index', () => {
    expect(list({ namePrefix: 'run-7-' })).toMatch(/^SEARCH t USING INDEX tasks_name \(name>\? AND name<\?\)/);
  });

  it('drives tag filters from the tag indexes, already in order', () => {
    const kv = 'SEARCH g0 USING COVERING INDEX task_tags_key_value (key=? AND value=?) | SEARCH t USING INTEGER PRIMARY KEY (rowid=?)';
    expect(list({ tags: [{ key: 'project', value: 'p1' }] })).toBe(kv);
    expect(list({ tags: [{ key: 'batch' }] })).toBe('SEARCH g0 USING PRIMARY KEY (key=?) | SEARCH t USING INTEGER PRIMARY KEY (rowid=?)');
    expect(list({ tags: [{ key: 'batch', value: '3' }] }, 100)).toMatch(/^SEARCH g0 USING COVERING INDEX task_tags_key_value \(key=\? AND value=\? AND task_seq<\?\)/);
    const both = list({ tags: [{ key: 'project', value: 'p1' }, { key: 'batch', value: '3' }] });
    expect(both).not.toMatch(/SCAN/);
    expect(both).toMatch(/SEARCH g1 USING (COVERING INDEX task_tags_key_value|PRIMARY KEY)/);
  });

  it('never scans the task table under a filter', () => {
    const filtered = [
      list({ state: TesState.RUNNING, namePrefix: 'run-1', tags: [{ key: 'project', value: 'p1' }] }),
      list({ namePrefix: 'run-1', tags: [{ key: 'batch' }] }),
      list({ tags: Array.from({ length: 20 }, (_, i) => ({ key: `k${i}` })) }),
    ];
    for (const detail of filtered) expect(detail).not.toMatch(/SCAN t\b/);
  });

  it('merges ordered state ranges for findByState instead of sorting', () => {
    expect(plan(findByStateStatement([TesState.QUEUED], 10))).toBe('SEARCH tasks USING INDEX tasks_state_seq (state=?)');
    const several = plan(findByStateStatement([TesState.QUEUED, TesState.RUNNING, TesState.INITIALIZING, TesState.QUEUED], 10));
    expect(several).toMatch(/MERGE \(UNION ALL\)/);
    expect(several).not.toMatch(/TEMP B-TREE|SCAN/);
  });

  it('claims the oldest QUEUED task through (state, seq) and the primary key, the skipped ids as one list', () => {
    // The skip list is read once into a lookup (json_each, then a bloom filter), not once per queued task.
    expect(leasePlan(CLAIM_NEXT_SQL, { holder: 'replica-1', until: 1, token: 't', now: 'n', skip: '["x"]' })).toBe(
      'SEARCH tasks USING INTEGER PRIMARY KEY (rowid=?) | SCALAR SUBQUERY 2 | SEARCH tasks USING INDEX tasks_state_seq (state=?) | LIST SUBQUERY 1 | SCAN json_each VIRTUAL TABLE INDEX 1: | CREATE BLOOM FILTER',
    );
  });

  it('reads a holder\'s leases from the partial lease_holder index', () => {
    for (const sql of [RENEW_LEASES_SQL, HELD_BY_SQL, COUNT_HELD_SQL]) {
      expect(leasePlan(sql, { holder: 'replica-1', until: 1 }).split(' | ')[0]).toBe('SEARCH tasks USING INDEX tasks_lease_holder (lease_holder=?)');
    }
  });

  it('finds expired leases among held tasks only, and takes over or releases one task by id', () => {
    // Held tasks are few (a replica's capacity), so sorting them by lease_until is cheap.
    expect(leasePlan(EXPIRED_LEASES_SQL, { now: Date.now(), limit: 10 })).toBe(
      'SEARCH tasks USING INDEX tasks_state_seq (state=?) | SEARCH task_requests USING INTEGER PRIMARY KEY (rowid=?) | USE TEMP B-TREE FOR ORDER BY',
    );
    const byId = 'SEARCH tasks USING INDEX sqlite_autoindex_tasks_1 (id=?)';
    expect(leasePlan(TAKE_OVER_SQL, { id: 'task-1', expected: null, now: 1, holder: 'h', until: 2, token: 't' })).toBe(byId);
    expect(leasePlan(RELEASE_LEASE_SQL, { id: 'task-1', token: 't' })).toBe(byId);
  });
});

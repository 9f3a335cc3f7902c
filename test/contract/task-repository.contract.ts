// The TaskRepository contract: every store implementation runs this suite unchanged, through the port only.
import { DomainError, ErrorCode } from '../../src/domain/domain-error';
import type { TaskPatch } from '../../src/domain/task-patch';
import { HELD_STATES } from '../../src/domain/task-state-machine';
import { StoredTask, TaskRecord, TaskView, TesState, TesTaskLog } from '../../src/domain/tes-task';
import type { TaskScope } from '../../src/domain/principal';
import type { HeldTask, TaskListQuery, TaskRepository } from '../../src/persistence/task-repository';
import { renderTask } from '../../src/tasks/task-views';

export interface RepositoryHarness {
  repo: TaskRepository;
  /** Closes the store and opens it again on the same data. */
  reopen(): Promise<TaskRepository>;
  /** Another store instance on the same data, as a second API process has; cleanup closes it. */
  openSecond(): Promise<TaskRepository>;
  cleanup(): Promise<void>;
}

let counter = 0;

export function makeTask(overrides: Partial<TaskRecord> = {}): TaskRecord {
  counter += 1;
  return {
    id: `task-${counter}-${Math.random().toString(36).slice(2, 8)}`,
    state: TesState.QUEUED,
    creation_time: new Date().toISOString(),
    executors: [{ image: 'alpine:latest', command: ['echo', 'hi'] }],
    logs: [],
    ...overrides,
  };
}

/** What a patch that applied answers: the task's id, state and control fields after it, not the whole task. */
function appliedTo(task: StoredTask) {
  return { applied: true, task: { id: task.id, state: task.state, control: task.control } };
}

/** The scope of an admin (and of every caller while authentication is off): every task. */
const EVERY_TASK: TaskScope = { all: true };

/** A task as the store returns it right after insert: attempt 0, nothing applied, no lease. */
function fresh(task: TaskRecord, owner = ''): StoredTask {
  return { ...structuredClone(task), control: { owner, attempt: 0, update_seq: 0 } };
}

/** A lease long enough never to expire during a test, and one that has surely expired after `expire()`. */
const LONG_LEASE_MS = 60_000;
const SHORT_LEASE_MS = 20;
const expire = () => new Promise((resolve) => setTimeout(resolve, SHORT_LEASE_MS * 3));

function log(systemLogs: string[] = []): TesTaskLog {
  return { logs: [], outputs: [], system_logs: systemLogs };
}

const byId = (tasks: HeldTask[]) => [...tasks].sort((a, b) => a.id.localeCompare(b.id));

async function expectDomainError(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  await expect(promise).rejects.toBeInstanceOf(DomainError);
  await expect(promise).rejects.toMatchObject({ code });
}

/** What a store under test cannot do, with why: the cases that need it skip, saying so. */
export interface StoreLimits {
  /** The server does not enforce unique indexes (a test double of MongoDB): duplicate ids are not refused. */
  uniqueIndex?: string;
}

/** How a case wants the store built. */
export interface StoreOptions {
  /** The byte budget of a full list page (store.full_page_bytes). */
  fullPageBytes?: number;
}

export function describeTaskRepositoryContract(name: string, open: (options?: StoreOptions) => Promise<RepositoryHarness>, limits: StoreLimits = {}): void {
  /** A case that needs a unique index: skipped, with the reason in its name, where the store has none. */
  const itWithUniqueIndex = (title: string, body: () => Promise<void>) =>
    limits.uniqueIndex ? it.skip(`${title} (skipped: ${limits.uniqueIndex})`, body) : it(title, body);
  describe(`TaskRepository contract: ${name}`, () => {
    let harness: RepositoryHarness;
    let repo: TaskRepository;

    beforeEach(async () => {
      harness = await open();
      repo = harness.repo;
    });

    afterEach(async () => {
      await harness.cleanup();
    });

    async function insertAll(tasks: TaskRecord[]): Promise<void> {
      for (const task of tasks) await repo.insert(task, '');
    }

    /** Inserts a task and claims it (it must be the only QUEUED one). */
    async function claimed(holder: string, leaseMs: number, overrides: Partial<TaskRecord> = {}): Promise<StoredTask> {
      const task = makeTask(overrides);
      await repo.insert(task, '');
      const claim = await repo.claimNext(holder, leaseMs);
      expect(claim?.id).toBe(task.id);
      return claim!;
    }

    /** A patch by the holder of `task`'s current lease and attempt. */
    function byHolder(task: StoredTask, patch: Partial<TaskPatch>): TaskPatch {
      return { from: HELD_STATES, attempt: task.control.attempt, lease_token: task.control.lease?.token, ops: [], ...patch };
    }

    it('stores and returns every field of a task', async () => {
      const task = makeTask({
        name: 'ünïcödé task ✓ 🧬 日本語',
        description: 'a description',
        inputs: [
          { path: '/data/a', url: 'https://example.org/a', type: 'FILE' },
          { path: '/data/b', content: 'inline', type: 'FILE' },
        ],
        outputs: [{ path: '/out/*.txt', path_prefix: '/out', url: 'file:///tmp/out', type: 'FILE' }],
        resources: { cpu_cores: 2, ram_gb: 0.5, preemptible: false, zones: ['a'], backend_parameters: { shm_size_gb: '1' } },
        executors: [
          { image: 'alpine', command: ['sh', '-c', 'echo $X'], env: { X: 'y' }, workdir: '/data', ignore_error: true },
          { image: 'ubuntu:20.04', command: ['cat'], stdin: '/data/a', stdout: '/out/o.txt', stderr: '/out/e.txt' },
        ],
        volumes: ['/shared'],
        tags: { project: 'p1', empty: '', 'ключ 🔑': 'värde\n"quoted"' },
        logs: [
          {
            start_time: '2026-01-01T00:00:00Z',
            end_time: '2026-01-01T00:00:09Z',
            logs: [{ start_time: 't0', end_time: 't1', exit_code: 0, stdout: 'out\n🙂\u0000', stderr: '' }],
            outputs: [{ url: 'u', path: 'p', size_bytes: '3' }],
            system_logs: ['note'],
            metadata: { k: 'v' },
          },
        ],
      });
      await repo.insert(task, '');
      expect(await repo.getUnscoped(task.id)).toEqual(fresh(task));
    });

    itWithUniqueIndex('refuses a second task with the same id', async () => {
      const task = makeTask();
      await repo.insert(task, '');
      await expectDomainError(repo.insert({ ...task }, ''), ErrorCode.Conflict);
    });

    itWithUniqueIndex('lets only one of two simultaneous inserts with the same id succeed', async () => {
      const task = makeTask();
      const twin = { ...task, name: 'twin' };
      const results = await Promise.allSettled([repo.insert(task, ''), repo.insert(twin, '')]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(failed?.reason).toMatchObject({ code: ErrorCode.Conflict });
      expect(await repo.getUnscoped(task.id)).toEqual(fresh(results[0].status === 'fulfilled' ? task : twin));
    });

    it('stores the task as it was when insert was called', async () => {
      const task = makeTask({ tags: { a: '1' } });
      const copy = structuredClone(task);
      const stored = repo.insert(task, '');
      task.name = 'changed later';
      task.tags!.a = '2';
      await stored;
      expect(await repo.getUnscoped(task.id)).toEqual(fresh(copy));
    });

    itWithUniqueIndex('keeps the other tasks of a batch when one id is a duplicate', async () => {
      const existing = makeTask();
      await repo.insert(existing, '');
      const other = makeTask();
      const results = await Promise.allSettled([repo.insert({ ...existing }, ''), repo.insert(other, '')]);
      expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled']);
      expect(await repo.getUnscoped(other.id)).toEqual(fresh(other));
    });

    it('returns undefined for an unknown id', async () => {
      expect(await repo.getUnscoped('no-such-task')).toBeUndefined();
    });

    it('lists newest first and pages without gaps or repeats', async () => {
      const tasks = Array.from({ length: 7 }, () => makeTask());
      await insertAll(tasks);
      const seen: string[] = [];
      let token: string | undefined;
      let pages = 0;
      do {
        const page = await repo.list(EVERY_TASK, { tags: [], pageSize: 3, pageToken: token, fields: 'minimal' });
        seen.push(...page.tasks.map((t) => t.id));
        token = page.nextPageToken;
        pages += 1;
      } while (token);
      expect(pages).toBe(3);
      expect(seen).toEqual(tasks.map((t) => t.id).reverse());
    });

    it('gives no next_page_token when the page holds the last task', async () => {
      await insertAll([makeTask(), makeTask()]);
      expect((await repo.list(EVERY_TASK, { tags: [], pageSize: 2, fields: 'minimal' })).nextPageToken).toBeUndefined();
      expect((await repo.list(EVERY_TASK, { tags: [], pageSize: 1, fields: 'minimal' })).nextPageToken).toEqual(expect.any(String));
    });

    it('keeps paging stable while new tasks arrive', async () => {
      const old = Array.from({ length: 4 }, () => makeTask());
      await insertAll(old);
      const first = await repo.list(EVERY_TASK, { tags: [], pageSize: 2, fields: 'minimal' });
      await insertAll([makeTask(), makeTask()]);
      const second = await repo.list(EVERY_TASK, { tags: [], pageSize: 2, pageToken: first.nextPageToken, fields: 'minimal' });
      expect([...first.tasks, ...second.tasks].map((t) => t.id)).toEqual(old.map((t) => t.id).reverse());
      expect(second.nextPageToken).toBeUndefined();
    });

    it('rejects a page token it did not issue', async () => {
      await insertAll([makeTask(), makeTask(), makeTask()]);
      const issued = (await repo.list(EVERY_TASK, { tags: [], pageSize: 1, fields: 'minimal' })).nextPageToken!;
      const foreign = ['garbage', 'eyJ4IjoxfQ', '', '!!!', 'czEuLTE', 'null', 'e30', 'eyJhZnRlciI6LTF9', 'eyJhZnRlciI6IjEifQ', `${issued}x`, `${issued}==`, ' '.repeat(4), 'a'.repeat(5000)];
      for (const token of foreign) {
        const attempt = repo.list(EVERY_TASK, { tags: [], pageSize: 5, pageToken: token, fields: 'minimal' });
        await expectDomainError(attempt, ErrorCode.InvalidArgument);
        await expect(attempt).rejects.toThrow(/^page_token: /);
      }
      expect((await repo.list(EVERY_TASK, { tags: [], pageSize: 5, pageToken: issued, fields: 'minimal' })).tasks).toHaveLength(2);
    });

    it('pages through filtered lists with the same guarantees', async () => {
      const tagged = Array.from({ length: 5 }, () => makeTask({ tags: { run: 'r1' }, state: TesState.COMPLETE }));
      const tasks = [...tagged, makeTask({ tags: { run: 'r2' } }), makeTask({ tags: { run: 'r1' } }), makeTask()];
      await insertAll(tasks);
      const walk = async (query: Omit<TaskListQuery, 'pageSize' | 'pageToken'>) => {
        const ids: string[] = [];
        let token: string | undefined;
        do {
          const page = await repo.list(EVERY_TASK, { ...query, pageSize: 2, pageToken: token });
          expect(page.tasks.length).toBeLessThanOrEqual(2);
          ids.push(...page.tasks.map((t) => t.id));
          token = page.nextPageToken;
        } while (token);
        return ids;
      };
      const byInsertion = (list: TaskRecord[]) => tasks.filter((t) => list.includes(t)).map((t) => t.id).reverse();
      expect(await walk({ tags: [{ key: 'run', value: 'r1' }], fields: 'minimal' })).toEqual(byInsertion(tasks.filter((t) => t.tags?.run === 'r1')));
      expect(await walk({ tags: [{ key: 'run' }], fields: 'full' })).toEqual(byInsertion(tasks.filter((t) => t.tags?.run)));
      expect(await walk({ state: TesState.COMPLETE, tags: [{ key: 'run', value: 'r1' }], fields: 'minimal' })).toEqual(byInsertion(tagged));
    });

    describe('owners', () => {
      const alice: TaskScope = { all: false, owner: 'alice' };
      const bob: TaskScope = { all: false, owner: 'bob' };
      const ids = (tasks: Array<{ id: string }>) => tasks.map((t) => t.id);

      /** Every id of a scope's list, page by page, checking each page's bound. */
      async function walk(scope: TaskScope, query: Omit<TaskListQuery, 'pageSize' | 'pageToken'>, pageSize: number): Promise<string[]> {
        const seen: string[] = [];
        let token: string | undefined;
        do {
          const page = await repo.list(scope, { ...query, pageSize, pageToken: token });
          expect(page.tasks.length).toBeLessThanOrEqual(pageSize);
          seen.push(...ids(page.tasks));
          token = page.nextPageToken;
        } while (token);
        return seen;
      }

      it('records the owner given at insert, and keeps it through patches', async () => {
        const task = makeTask();
        await repo.insert(task, 'alice');
        expect(await repo.getUnscoped(task.id)).toEqual(fresh(task, 'alice'));
        await repo.patch(task.id, { from: [TesState.QUEUED], attempt: 0, ops: [{ op: 'add_system_log', line: 'noted' }] });
        expect((await repo.getUnscoped(task.id))?.control.owner).toBe('alice');
        const claim = await repo.claimNext('replica-a', LONG_LEASE_MS);
        expect(claim?.control.owner).toBe('alice');
      });

      it('reads, views and lists only the tasks of the scope\'s owner; the admin scope sees every one', async () => {
        const mine = makeTask({ name: 'shared-name' });
        const theirs = makeTask({ name: 'shared-name' });
        await repo.insert(mine, 'alice');
        await repo.insert(theirs, 'bob');
        expect((await repo.get(mine.id, alice))?.id).toBe(mine.id);
        expect(await repo.get(theirs.id, alice)).toBeUndefined();
        expect(await repo.get(mine.id, bob)).toBeUndefined();
        for (const view of [TaskView.MINIMAL, TaskView.BASIC, TaskView.FULL]) {
          expect((await repo.getForView(mine.id, view, alice))?.id).toBe(mine.id);
          expect(await repo.getForView(theirs.id, view, alice)).toBeUndefined();
          expect((await repo.getForView(theirs.id, view, bob))?.id).toBe(theirs.id);
          expect((await repo.getForView(theirs.id, view, EVERY_TASK))?.id).toBe(theirs.id);
        }
        for (const fields of ['minimal', 'full'] as const) {
          expect(ids((await repo.list(alice, { tags: [], pageSize: 10, fields })).tasks)).toEqual([mine.id]);
          expect(ids((await repo.list(bob, { namePrefix: 'shared', tags: [], pageSize: 10, fields })).tasks)).toEqual([theirs.id]);
          expect(ids((await repo.list(EVERY_TASK, { tags: [], pageSize: 10, fields })).tasks)).toEqual([theirs.id, mine.id]);
        }
        expect((await repo.list({ all: false, owner: 'carol' }, { tags: [], pageSize: 10, fields: 'minimal' })).tasks).toEqual([]);
        // The anonymous caller's owner name is '' and it is an owner like any other.
        expect((await repo.list({ all: false, owner: '' }, { tags: [], pageSize: 10, fields: 'minimal' })).tasks).toEqual([]);
      });

      it('pages within an owner\'s scope over more than a page, and a token never leads out of the scope', async () => {
        const owners = ['alice', 'bob', 'bob', 'alice', 'alice', 'bob', 'alice', 'alice', 'bob', 'alice', 'alice'];
        const tasks = owners.map(() => makeTask());
        for (let i = 0; i < tasks.length; i++) await repo.insert(tasks[i], owners[i]);
        const newestFirst = (owner: string) => tasks.filter((_, i) => owners[i] === owner).map((t) => t.id).reverse();
        expect(await walk(alice, { tags: [], fields: 'minimal' }, 2)).toEqual(newestFirst('alice'));
        expect(await walk(bob, { tags: [], fields: 'full' }, 3)).toEqual(newestFirst('bob'));
        expect(await walk(EVERY_TASK, { tags: [], fields: 'minimal' }, 4)).toEqual(tasks.map((t) => t.id).reverse());
        // Bob's token in Alice's scope (and an admin's): it says where to go on; the scope says what is seen.
        const bobsFirst = await repo.list(bob, { tags: [], pageSize: 1, fields: 'minimal' });
        const fromBobsToken = await repo.list(alice, { tags: [], pageSize: 20, pageToken: bobsFirst.nextPageToken, fields: 'minimal' });
        expect(ids(fromBobsToken.tasks).every((id) => newestFirst('alice').includes(id))).toBe(true);
        const adminsToken = (await repo.list(EVERY_TASK, { tags: [], pageSize: 1, fields: 'minimal' })).nextPageToken;
        expect(ids((await repo.list(bob, { tags: [], pageSize: 20, pageToken: adminsToken, fields: 'full' })).tasks)).toEqual(newestFirst('bob'));
      });

      it('combines the owner with tag, state and name filters', async () => {
        const plan: Array<[string, Partial<TaskRecord>]> = [
          ['alice', { tags: { run: 'r1' }, state: TesState.COMPLETE, name: 'job-1' }],
          ['bob', { tags: { run: 'r1' }, state: TesState.COMPLETE, name: 'job-2' }],
          ['alice', { tags: { run: 'r2' }, state: TesState.COMPLETE, name: 'job-3' }],
          ['alice', { tags: { run: 'r1' }, name: 'job-4' }],
          ['bob', { tags: { run: 'r1', env: 'x' }, name: 'job-5' }],
          ['alice', { tags: { run: 'r1', env: 'x' }, state: TesState.COMPLETE, name: 'other' }],
          ['alice', { tags: { run: 'r1' }, state: TesState.COMPLETE, name: 'job-7' }],
        ];
        const tasks = plan.map(([, overrides]) => makeTask(overrides));
        for (let i = 0; i < tasks.length; i++) await repo.insert(tasks[i], plan[i][0]);
        const expected = (owner: string | undefined, keep: (t: TaskRecord) => boolean) =>
          tasks.filter((t, i) => (owner === undefined || plan[i][0] === owner) && keep(t)).map((t) => t.id).reverse();
        const r1 = (t: TaskRecord) => t.tags?.run === 'r1';
        const complete = (t: TaskRecord) => t.state === TesState.COMPLETE;
        for (const [scope, owner] of [[alice, 'alice'], [bob, 'bob'], [EVERY_TASK, undefined]] as const) {
          expect(await walk(scope, { tags: [{ key: 'run', value: 'r1' }], fields: 'minimal' }, 2)).toEqual(expected(owner, r1));
          expect(await walk(scope, { tags: [{ key: 'env' }, { key: 'run' }], fields: 'full' }, 1)).toEqual(expected(owner, (t) => t.tags?.env === 'x'));
          expect(await walk(scope, { state: TesState.COMPLETE, tags: [{ key: 'run', value: 'r1' }], fields: 'minimal' }, 1)).toEqual(expected(owner, (t) => r1(t) && complete(t)));
          expect(await walk(scope, { state: TesState.COMPLETE, namePrefix: 'job-', tags: [], fields: 'full' }, 2)).toEqual(
            expected(owner, (t) => complete(t) && Boolean(t.name?.startsWith('job-'))),
          );
        }
      });
    });

    describe('full pages within a byte budget', () => {
      let small: RepositoryHarness;

      beforeEach(async () => {
        small = await open({ fullPageBytes: 100_000 });
      });

      afterEach(async () => {
        await small.cleanup();
      });

      it('ends a full page early at the budget, with a token, and pages on to every task', async () => {
        const big = (i: number) => makeTask({ inputs: [{ path: `/in/${i}`, content: String(i).repeat(40_000), type: 'FILE' }] });
        const tasks = Array.from({ length: 5 }, (_, i) => big(i));
        for (const task of tasks) await small.repo.insert(task, 'alice');
        const sizes: number[] = [];
        const seen: TaskRecord[] = [];
        let token: string | undefined;
        do {
          const page = await small.repo.list(EVERY_TASK, { tags: [], pageSize: 10, pageToken: token, fields: 'full' });
          sizes.push(page.tasks.length);
          seen.push(...(page.tasks as TaskRecord[]));
          token = page.nextPageToken;
        } while (token);
        expect(sizes).toEqual([2, 2, 1]);
        expect(seen).toEqual([...tasks].reverse());
        // Minimal pages are bounded by count only.
        expect((await small.repo.list({ all: false, owner: 'alice' }, { tags: [], pageSize: 10, fields: 'minimal' })).tasks).toHaveLength(5);
      });

      it('still gives one task per page when a single task is over the budget', async () => {
        const huge = makeTask({ inputs: [{ path: '/in', content: 'x'.repeat(150_000), type: 'FILE' }] });
        const next = makeTask();
        await small.repo.insert(next, '');
        await small.repo.insert(huge, '');
        const first = await small.repo.list(EVERY_TASK, { tags: [], pageSize: 10, fields: 'full' });
        expect(first.tasks).toEqual([huge]);
        const second = await small.repo.list(EVERY_TASK, { tags: [], pageSize: 10, pageToken: first.nextPageToken, fields: 'full' });
        expect(second.tasks).toEqual([next]);
        expect(second.nextPageToken).toBeUndefined();
      });
    });

    it('filters by name prefix literally and case-sensitively', async () => {
      const names = ['f9327c19-a', 'ComplianceTest-f9327c19', 'F9327C19-upper', 'f9327c19', '100%_done', '100xxdone'];
      await insertAll(names.map((name) => makeTask({ name })));
      const names1 = (await repo.list(EVERY_TASK, { namePrefix: 'f9327c19', tags: [], pageSize: 10, fields: 'full' })).tasks.map((t) => t.name);
      expect(names1.sort()).toEqual(['f9327c19', 'f9327c19-a']);
      const names2 = (await repo.list(EVERY_TASK, { namePrefix: '100%_', tags: [], pageSize: 10, fields: 'full' })).tasks.map((t) => t.name);
      expect(names2).toEqual(['100%_done']);
      expect((await repo.list(EVERY_TASK, { namePrefix: 'f9327C19', tags: [], pageSize: 10, fields: 'minimal' })).tasks).toEqual([]);
    });

    it('matches name prefixes with characters outside the basic plane', async () => {
      const names = ['🧬-run-1', '🧬', '🧪-run', 'x🧬', 'ü-1', 'u-1'];
      await insertAll(names.map((name) => makeTask({ name })));
      const match = async (namePrefix: string) =>
        (await repo.list(EVERY_TASK, { namePrefix, tags: [], pageSize: 10, fields: 'full' })).tasks.map((t) => t.name).sort();
      expect(await match('🧬')).toEqual(['🧬', '🧬-run-1']);
      expect(await match('🧬-r')).toEqual(['🧬-run-1']);
      expect(await match('ü')).toEqual(['ü-1']);
      expect(await match('\u{10FFFF}')).toEqual([]);
    });

    it('combines name prefix, state and tags with AND', async () => {
      const hit = makeTask({ name: 'job-1', state: TesState.RUNNING, tags: { team: 'a', env: 'prod' } });
      await insertAll([
        hit,
        makeTask({ name: 'job-2', state: TesState.QUEUED, tags: { team: 'a', env: 'prod' } }),
        makeTask({ name: 'job-3', state: TesState.RUNNING, tags: { team: 'b', env: 'prod' } }),
        makeTask({ name: 'other', state: TesState.RUNNING, tags: { team: 'a', env: 'prod' } }),
        makeTask({ name: 'job-4', state: TesState.RUNNING, tags: { team: 'a' } }),
      ]);
      const page = await repo.list(EVERY_TASK, { namePrefix: 'job-', state: TesState.RUNNING, tags: [{ key: 'team', value: 'a' }, { key: 'env' }], pageSize: 10, fields: 'minimal' });
      expect(page).toEqual({ tasks: [{ id: hit.id, state: TesState.RUNNING }] });
    });

    it('filters by state', async () => {
      const done = makeTask({ state: TesState.COMPLETE });
      await insertAll([makeTask(), done, makeTask({ state: TesState.RUNNING })]);
      const page = await repo.list(EVERY_TASK, { state: TesState.COMPLETE, tags: [], pageSize: 10, fields: 'minimal' });
      expect(page.tasks).toEqual([{ id: done.id, state: TesState.COMPLETE }]);
    });

    it('filters by tags: key exists, key and value, all pairs', async () => {
      const a = makeTask({ tags: { foo: 'x' } });
      const b = makeTask({ tags: {} });
      const c = makeTask({ tags: { foo: 'bar', baz: 'bat' } });
      const d = makeTask({ tags: { foo: 'bar' } });
      const e = makeTask({ tags: { abcxyz: '' } });
      await insertAll([a, b, c, d, e]);
      const ids = async (tags: Array<{ key: string; value?: string }>) =>
        (await repo.list(EVERY_TASK, { tags, pageSize: 10, fields: 'minimal' })).tasks.map((t) => t.id).sort();
      expect(await ids([{ key: 'foo' }])).toEqual([a.id, c.id, d.id].sort());
      expect(await ids([{ key: 'foo', value: '' }])).toEqual([a.id, c.id, d.id].sort());
      expect(await ids([{ key: 'foo', value: 'bar' }])).toEqual([c.id, d.id].sort());
      expect(await ids([{ key: 'foo', value: 'bar' }, { key: 'baz', value: 'bat' }])).toEqual([c.id]);
      expect(await ids([{ key: 'abcxyz' }])).toEqual([e.id]);
      expect(await ids([{ key: 'unknown' }])).toEqual([]);
      expect(await ids([{ key: 'foo', value: 'nope' }])).toEqual([]);
      expect(await ids([{ key: 'foo', value: 'bar' }, { key: 'foo', value: 'bar' }])).toEqual([c.id, d.id].sort());
      expect(await ids([{ key: 'foo', value: 'bar' }, { key: 'foo', value: 'x' }])).toEqual([]);
    });

    it('reads only id and state for minimal lists, and no control fields for full ones', async () => {
      const task = makeTask({ name: 'n', tags: { a: 'b' } });
      await repo.insert(task, '');
      expect((await repo.list(EVERY_TASK, { tags: [], pageSize: 1, fields: 'minimal' })).tasks[0]).toEqual({ id: task.id, state: TesState.QUEUED });
      expect((await repo.list(EVERY_TASK, { tags: [], pageSize: 1, fields: 'full' })).tasks[0]).toEqual(task);
    });

    it('reads one task for a view: id and state at MINIMAL, at least what BASIC shows, the whole record at FULL', async () => {
      const task = makeTask({
        name: 'n',
        inputs: [{ path: '/data/a', content: 'inline', type: 'FILE' }, { path: '/data/b', url: 'https://example.org/b', type: 'FILE' }],
        logs: [{ logs: [{ stdout: 'out', stderr: 'err', exit_code: 0 }], outputs: [], system_logs: ['note'] }],
      });
      const plain = makeTask();
      await insertAll([task, plain]);
      expect(await repo.getForView(task.id, TaskView.MINIMAL, EVERY_TASK)).toEqual({ id: task.id, state: TesState.QUEUED });
      expect(await repo.getForView(task.id, TaskView.FULL, EVERY_TASK)).toEqual(task);
      // BASIC: a store may leave out what the view drops, and nothing else; arrays the task has not stay absent.
      expect(renderTask((await repo.getForView(task.id, TaskView.BASIC, EVERY_TASK))!, TaskView.BASIC)).toEqual(renderTask(task, TaskView.BASIC));
      expect(await repo.getForView(plain.id, TaskView.BASIC, EVERY_TASK)).toEqual(plain);
      for (const view of [TaskView.MINIMAL, TaskView.BASIC, TaskView.FULL]) expect(await repo.getForView('no-such-task', view, EVERY_TASK)).toBeUndefined();
    });

    it('stores a new task with attempt 0 and no lease, whatever control the object carries', async () => {
      const task = makeTask({ state: TesState.RUNNING });
      const carrying: StoredTask = { ...task, control: { attempt: 3, update_seq: 7, lease: { holder: 'h', until: Date.now() + LONG_LEASE_MS, token: 't' }, backend_ref: { a: 1 } } };
      await repo.insert(carrying, '');
      expect(await repo.getUnscoped(task.id)).toEqual(fresh(task));
      expect(await repo.heldBy('h')).toEqual([]);
    });

    describe('patch', () => {
      it('applies when its state guard holds and refuses once the state has moved on', async () => {
        const task = makeTask();
        await repo.insert(task, '');
        const cancel: TaskPatch = { from: [TesState.QUEUED], to: TesState.CANCELED, attempt: 0, ops: [{ op: 'add_system_log', line: 'canceled by the user' }] };
        const result = await repo.patch(task.id, cancel);
        const expected: StoredTask = { ...fresh(task), state: TesState.CANCELED, logs: [log(['canceled by the user'])] };
        expect(result).toEqual(appliedTo(expected));
        expect(await repo.getUnscoped(task.id)).toEqual(expected);
        expect(await repo.patch(task.id, cancel)).toEqual({ applied: false, reason: 'state' });
        expect(await repo.patch('no-such-task', cancel)).toEqual({ applied: false, reason: 'missing' });
        expect(await repo.getUnscoped(task.id)).toEqual(expected);
      });

      it('refuses a state change the state machine does not allow', async () => {
        const task = makeTask();
        await repo.insert(task, '');
        expect(await repo.patch(task.id, { from: [TesState.QUEUED], to: TesState.RUNNING, attempt: 0, ops: [] })).toEqual({ applied: false, reason: 'state' });
        expect(await repo.getUnscoped(task.id)).toEqual(fresh(task));
      });

      it('lists a task by the state a patch gave it', async () => {
        const task = makeTask({ name: 'patched', tags: { keep: 'k' } });
        await insertAll([task, makeTask()]);
        await repo.patch(task.id, { from: [TesState.QUEUED], to: TesState.CANCELED, attempt: 0, ops: [] });
        const ids = async (query: Partial<TaskListQuery>) => (await repo.list(EVERY_TASK, { tags: [], pageSize: 10, fields: 'minimal', ...query })).tasks.map((t) => t.id);
        expect(await ids({ state: TesState.CANCELED })).toEqual([task.id]);
        expect(await ids({ state: TesState.QUEUED })).not.toContain(task.id);
        expect(await ids({ namePrefix: 'patched', tags: [{ key: 'keep', value: 'k' }] })).toEqual([task.id]);
        expect((await repo.findByState([TesState.CANCELED], 10)).map((t) => t.id)).toEqual([task.id]);
      });

      it('lets exactly one of many concurrent state changes win, across instances', async () => {
        const second = await harness.openSecond();
        const task = makeTask();
        await repo.insert(task, '');
        const cancel: TaskPatch = { from: [TesState.QUEUED], to: TesState.CANCELED, attempt: 0, ops: [] };
        const results = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? second : repo).patch(task.id, cancel)));
        expect(results.filter((r) => r.applied)).toHaveLength(1);
        expect(results.filter((r) => !r.applied)).toEqual(Array.from({ length: 9 }, () => ({ applied: false, reason: 'state' })));
      });

      it('applies every one of many concurrent patches, across instances', async () => {
        const second = await harness.openSecond();
        const task = makeTask();
        await repo.insert(task, '');
        const lines = Array.from({ length: 20 }, (_, i) => `line ${i}`);
        const results = await Promise.all(
          lines.map((line, i) => (i % 2 ? second : repo).patch(task.id, { from: [TesState.QUEUED], attempt: 0, ops: [{ op: 'add_system_log', line }] })),
        );
        expect(results.every((r) => r.applied)).toBe(true);
        expect((await repo.getUnscoped(task.id))?.logs[0].system_logs.sort()).toEqual([...lines].sort());
      });

      it('applies only in the current attempt', async () => {
        const task = await claimed('replica-a', LONG_LEASE_MS);
        const line = { op: 'add_system_log', line: 'x' } as const;
        expect(await repo.patch(task.id, byHolder(task, { attempt: 0, ops: [line] }))).toEqual({ applied: false, reason: 'attempt' });
        expect(await repo.patch(task.id, byHolder(task, { attempt: 2, ops: [line] }))).toEqual({ applied: false, reason: 'attempt' });
        expect(await repo.getUnscoped(task.id)).toEqual(task);
        expect((await repo.patch(task.id, byHolder(task, { ops: [line] }))).applied).toBe(true);
      });

      it('refuses a writer whose lease token is not the task\'s', async () => {
        const task = await claimed('replica-a', LONG_LEASE_MS);
        const running = byHolder(task, { from: [TesState.INITIALIZING], to: TesState.RUNNING });
        expect(await repo.patch(task.id, { ...running, lease_token: 'someone-else' })).toEqual({ applied: false, reason: 'fenced' });
        expect(await repo.getUnscoped(task.id)).toEqual(task);
        const result = await repo.patch(task.id, running);
        expect(result).toEqual(appliedTo({ ...task, state: TesState.RUNNING }));
        expect(await repo.getUnscoped(task.id)).toEqual({ ...task, state: TesState.RUNNING });
      });

      it('changes nothing when an update is replayed or arrives out of order, across instances', async () => {
        const second = await harness.openSecond();
        const task = await claimed('replica-a', LONG_LEASE_MS);
        const update = (seq: number, line: string) => byHolder(task, { seq, ops: [{ op: 'add_system_log', line }] });
        const applied = await repo.patch(task.id, update(3, 'third'));
        expect(applied).toMatchObject({ applied: true, task: { control: { update_seq: 3 } } });
        const after = await repo.getUnscoped(task.id);
        expect(await second.patch(task.id, update(3, 'third again'))).toEqual({ applied: false, reason: 'stale' });
        expect(await second.patch(task.id, update(2, 'second, late'))).toEqual({ applied: false, reason: 'stale' });
        expect(await repo.getUnscoped(task.id)).toEqual(after);
        expect(after?.logs[0].system_logs).toEqual(['third']);
        expect(await second.patch(task.id, update(4, 'fourth'))).toMatchObject({ applied: true, task: { control: { update_seq: 4 } } });
      });

      it('adds system log lines and outputs as sets', async () => {
        const task = await claimed('replica-a', LONG_LEASE_MS);
        const outputs = [
          { url: 's3://b/o1', path: '/out/1', size_bytes: '1' },
          { url: 's3://b/o2', path: '/out/2', size_bytes: '2' },
        ];
        const adds = byHolder(task, { ops: [{ op: 'add_system_log', line: 'same' }, { op: 'add_system_log', line: 'same' }, { op: 'add_outputs', outputs: [outputs[0], outputs[0]] }] });
        expect((await repo.patch(task.id, adds)).applied).toBe(true);
        expect((await repo.patch(task.id, adds)).applied).toBe(true);
        const more = byHolder(task, { ops: [{ op: 'add_system_log', line: 'other' }, { op: 'add_outputs', outputs }] });
        expect((await repo.patch(task.id, more)).applied).toBe(true);
        const stored = await repo.getUnscoped(task.id);
        expect(stored?.logs[0].system_logs).toEqual(['same', 'other']);
        expect(stored?.logs[0].outputs).toEqual(outputs);
      });

      it('writes executor logs, metadata, times and the backend ref of the attempt', async () => {
        const task = await claimed('replica-a', LONG_LEASE_MS);
        const result = await repo.patch(
          task.id,
          byHolder(task, {
            ops: [
              { op: 'set_executor_log', index: 1, fields: { start_time: 's1' } },
              { op: 'set_executor_log', index: 1, fields: { exit_code: 0, stdout: 'out' } },
              { op: 'merge_metadata', values: { a: '1' } },
              { op: 'merge_metadata', values: { b: '2' } },
              { op: 'set_times', end_time: 'e' },
              { op: 'set_backend_ref', ref: { container: 'c1', port: 5, detached: true } },
            ],
          }),
        );
        const expected: StoredTask = {
          ...task,
          logs: [{ ...task.logs[0], logs: [{}, { start_time: 's1', exit_code: 0, stdout: 'out' }], metadata: { a: '1', b: '2' }, end_time: 'e' }],
          control: { ...task.control, backend_ref: { container: 'c1', port: 5, detached: true } },
        };
        expect(result).toEqual(appliedTo(expected));
        expect(await repo.getUnscoped(task.id)).toEqual(expected);
      });

      it('sets backend ref keys without dropping keys another writer stored before', async () => {
        const task = await claimed('replica-a', LONG_LEASE_MS);
        // A report (no lease token: another replica may write it) lands before the holder records its reference.
        await repo.patch(task.id, { from: [TesState.INITIALIZING], attempt: task.control.attempt, ops: [{ op: 'set_backend_ref', ref: { report_progress: 'p' } }] });
        await repo.patch(task.id, byHolder(task, { ops: [{ op: 'set_backend_ref', ref: { runner: 'r1', job_id: 'j1' } }] }));
        await repo.patch(task.id, byHolder(task, { ops: [{ op: 'set_backend_ref', ref: { job_id: 'j2' } }] }));
        expect((await repo.getUnscoped(task.id))?.control.backend_ref).toEqual({ report_progress: 'p', runner: 'r1', job_id: 'j2' });
      });

      it('opens a new attempt with its own log and update numbers', async () => {
        const task = await claimed('replica-a', LONG_LEASE_MS);
        await repo.patch(task.id, byHolder(task, { seq: 5, ops: [{ op: 'set_backend_ref', ref: { container: 'lost' } }] }));
        const retry = await repo.patch(
          task.id,
          byHolder(task, { from: [TesState.RUNNING, TesState.INITIALIZING], to: TesState.INITIALIZING, ops: [{ op: 'add_system_log', line: 'the run was lost' }], next_attempt: { log: log(['attempt 2']) } }),
        );
        expect(retry.applied).toBe(true);
        const second = await repo.getUnscoped(task.id);
        expect(second?.control).toEqual({ owner: '', attempt: 2, update_seq: 0, lease: task.control.lease });
        expect(second?.logs).toEqual([{ ...task.logs[0], system_logs: ['the run was lost'] }, log(['attempt 2'])]);
        expect(await repo.patch(task.id, byHolder(task, { seq: 6 }))).toEqual({ applied: false, reason: 'attempt' });
        const first = await repo.patch(task.id, byHolder(second!, { seq: 1, ops: [{ op: 'add_system_log', line: 'second run' }] }));
        expect(first).toMatchObject({ applied: true, task: { control: { attempt: 2, update_seq: 1 } } });
        expect(await repo.getUnscoped(task.id)).toMatchObject({ logs: [{}, { system_logs: ['attempt 2', 'second run'] }] });
      });

      it('ends the lease with a terminal state', async () => {
        const task = await claimed('replica-a', SHORT_LEASE_MS);
        const done = await repo.patch(task.id, byHolder(task, { from: [TesState.INITIALIZING], to: TesState.COMPLETE, ops: [{ op: 'set_times', end_time: 'e' }] }));
        expect(done.applied && done.task.control).toEqual({ owner: '', attempt: 1, update_seq: 0 });
        expect((await repo.getUnscoped(task.id))?.control).toEqual({ owner: '', attempt: 1, update_seq: 0 });
        expect(await repo.heldBy('replica-a')).toEqual([]);
        expect(await repo.countHeld('replica-a')).toBe(0);
        expect(await repo.renewLeases('replica-a', LONG_LEASE_MS)).toEqual([]);
        await expire();
        expect(await repo.findExpiredLeases(Date.now(), 10)).toEqual([]);
        expect(await repo.takeOver(task.id, task.control.lease?.token, 'replica-b', LONG_LEASE_MS)).toBeUndefined();
        expect(await repo.takeOver(task.id, undefined, 'replica-b', LONG_LEASE_MS)).toBeUndefined();
      });

      it('uses the patch as it was when patch was called', async () => {
        const task = makeTask();
        await repo.insert(task, '');
        const patch: TaskPatch = { from: [TesState.QUEUED], attempt: 0, ops: [{ op: 'add_system_log', line: 'as called' }] };
        const pending = repo.patch(task.id, patch);
        (patch.ops as Array<{ op: 'add_system_log'; line: string }>)[0].line = 'changed later';
        await pending;
        expect((await repo.getUnscoped(task.id))?.logs[0].system_logs).toEqual(['as called']);
      });
    });

    it('hands out copies: changing a returned task changes nothing stored', async () => {
      const task = makeTask({ tags: { a: 'b' }, logs: [log(['created'])] });
      await repo.insert(task, '');
      (await repo.getUnscoped(task.id))!.tags!.a = 'changed by the caller';
      const claim = await repo.claimNext('replica-a', LONG_LEASE_MS);
      const stored = await repo.getUnscoped(task.id);
      claim!.logs[0].system_logs.push('changed by the caller');
      claim!.control.lease!.token = 'changed by the caller';
      const result = await repo.patch(task.id, byHolder(stored!, { ops: [{ op: 'add_system_log', line: 'patched' }] }));
      const patched = await repo.getUnscoped(task.id);
      if (result.applied) result.task.control.update_seq = 99;
      (await repo.findByState([TesState.INITIALIZING], 1))[0].control.attempt = 9;
      expect(stored).toMatchObject({ tags: { a: 'b' }, logs: [{ system_logs: ['created'] }] });
      expect(await repo.getUnscoped(task.id)).toEqual(patched);
      expect(patched?.logs[0].system_logs).toEqual(['created', 'patched']);
      expect(patched?.control).toEqual(stored?.control);
    });

    itWithUniqueIndex('keeps the other writes of a batch when one fails', async () => {
      const existing = makeTask();
      await insertAll([existing, makeTask()]);
      const other = makeTask();
      const results = await Promise.allSettled([
        repo.insert({ ...existing }, ''),
        repo.patch(existing.id, { from: [TesState.QUEUED], attempt: 0, ops: [{ op: 'add_system_log', line: 'kept' }] }),
        repo.claimNext('replica-a', LONG_LEASE_MS),
        repo.insert(other, ''),
      ]);
      expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
      expect((await repo.getUnscoped(existing.id))?.logs[0].system_logs).toEqual(['kept']);
      expect(await repo.countHeld('replica-a')).toBe(1);
      expect(await repo.getUnscoped(other.id)).toEqual(fresh(other));
    });

    it('finds tasks by state, oldest first, up to a limit, without their requests', async () => {
      const queued = [makeTask(), makeTask(), makeTask()];
      await insertAll([queued[0], makeTask({ state: TesState.RUNNING }), queued[1], queued[2]]);
      expect((await repo.findByState([TesState.QUEUED], 2)).map((t) => t.id)).toEqual([queued[0].id, queued[1].id]);
      expect(await repo.findByState([], 5)).toEqual([]);
      const active = await repo.findByState([TesState.RUNNING, TesState.QUEUED], 10);
      expect(active.map((t) => t.state)).toEqual([TesState.QUEUED, TesState.RUNNING, TesState.QUEUED, TesState.QUEUED]);
      const { id, state, logs, control } = fresh(queued[0]);
      expect(active[0]).toEqual({ id, state, logs, control });
    });

    describe('leases', () => {
      it('claims the oldest QUEUED task as attempt 1 under a new lease', async () => {
        const warned = makeTask({ logs: [{ ...log(['creation warning']), metadata: { m: '1' } }] });
        const plain = makeTask();
        await insertAll([makeTask({ state: TesState.RUNNING }), warned, makeTask({ state: TesState.COMPLETE }), plain]);
        const before = Date.now();
        const first = await repo.claimNext('replica-a', LONG_LEASE_MS);
        expect(first).toEqual({
          ...warned,
          state: TesState.INITIALIZING,
          logs: [{ ...warned.logs[0], start_time: expect.any(String) }],
          control: { owner: '', attempt: 1, update_seq: 0, lease: { holder: 'replica-a', until: expect.any(Number), token: expect.any(String) } },
        });
        expect(new Date(first!.logs[0].start_time!).toISOString()).toBe(first!.logs[0].start_time);
        expect(first!.control.lease!.until).toBeGreaterThanOrEqual(before + LONG_LEASE_MS);
        expect(await repo.getUnscoped(warned.id)).toEqual(first);
        const second = await repo.claimNext('replica-b', LONG_LEASE_MS);
        expect(second).toMatchObject({ id: plain.id, state: TesState.INITIALIZING, logs: [{ ...log(), start_time: expect.any(String) }] });
        expect(second!.logs).toHaveLength(1);
        expect(second!.control.lease!.token).not.toBe(first!.control.lease!.token);
        expect(await repo.claimNext('replica-a', LONG_LEASE_MS)).toBeUndefined();
      });

      it('passes over the QUEUED tasks a claim says to skip', async () => {
        const [older, newer] = [makeTask(), makeTask()];
        await insertAll([older, newer]);
        expect(await repo.claimNext('replica-a', LONG_LEASE_MS, { skip: [older.id, 'no-such-task'] })).toMatchObject({ id: newer.id });
        expect(await repo.claimNext('replica-a', LONG_LEASE_MS, { skip: [older.id] })).toBeUndefined();
        expect(await repo.claimNext('replica-a', LONG_LEASE_MS, { skip: [] })).toMatchObject({ id: older.id });
      });

      it('puts a claimed task back in the queue unheld, to be claimed again with its log kept', async () => {
        const task = await claimed('replica-a', LONG_LEASE_MS);
        const back = await repo.patch(task.id, byHolder(task, { from: [TesState.INITIALIZING], to: TesState.QUEUED, ops: [{ op: 'add_system_log', line: 'waiting: runner x does not answer' }] }));
        expect(back).toMatchObject({ applied: true, task: { state: TesState.QUEUED } });
        const stored = await repo.getUnscoped(task.id);
        expect(stored!.control.lease).toBeUndefined();
        expect(await repo.countHeld('replica-a')).toBe(0);
        expect(await repo.heldBy('replica-a')).toEqual([]);
        const again = await repo.claimNext('replica-b', LONG_LEASE_MS);
        expect(again).toMatchObject({ id: task.id, state: TesState.INITIALIZING, control: { attempt: 1, lease: { holder: 'replica-b' } } });
        expect(again!.logs).toHaveLength(1);
        expect(again!.logs[0].system_logs).toEqual(['waiting: runner x does not answer']);
        // The earlier holder's token no longer writes.
        expect(await repo.patch(task.id, byHolder(task, { ops: [{ op: 'add_system_log', line: 'late' }] }))).toEqual({ applied: false, reason: 'fenced' });
      });

      it('never hands one task to two holders under 20 concurrent claimers on two instances', async () => {
        const second = await harness.openSecond();
        const tasks = Array.from({ length: 25 }, (_, i) => makeTask(i % 5 === 0 ? { logs: [log([`warning ${i}`])] } : {}));
        await insertAll(tasks);
        const order = new Map(tasks.map((t, i) => [t.id, i]));
        const claimsBy = new Map<string, StoredTask[]>();
        await Promise.all(
          Array.from({ length: 20 }, async (_, c) => {
            const store = c % 2 ? second : repo;
            const holder = `replica-${c % 2}-claimer-${c}`;
            const mine: StoredTask[] = [];
            claimsBy.set(holder, mine);
            for (let claim = await store.claimNext(holder, LONG_LEASE_MS); claim; claim = await store.claimNext(holder, LONG_LEASE_MS)) mine.push(claim);
          }),
        );
        const all = [...claimsBy.values()].flat();
        expect(all.map((t) => t.id).sort()).toEqual(tasks.map((t) => t.id).sort());
        expect(new Set(all.map((t) => t.control.lease?.token)).size).toBe(tasks.length);
        for (const [holder, mine] of claimsBy) {
          // Each claim takes the oldest task still QUEUED, so one claimer's claims follow the insertion order.
          const positions = mine.map((t) => order.get(t.id)!);
          expect(positions).toEqual([...positions].sort((a, b) => a - b));
          for (const claim of mine) {
            const task = tasks[order.get(claim.id)!];
            expect(claim.control).toEqual({ owner: '', attempt: 1, update_seq: 0, lease: { holder, until: expect.any(Number), token: expect.any(String) } });
            expect(claim.logs).toEqual([{ ...log(task.logs[0]?.system_logs ?? []), start_time: expect.any(String) }]);
            expect(await second.getUnscoped(claim.id)).toEqual(claim);
          }
        }
        expect(await repo.claimNext('late', LONG_LEASE_MS)).toBeUndefined();
        expect(await repo.findByState([TesState.QUEUED], 100)).toEqual([]);
      });

      it('renews only the given holder\'s leases and lists what each holder has', async () => {
        const second = await harness.openSecond();
        await insertAll([makeTask(), makeTask(), makeTask()]);
        const a1 = (await repo.claimNext('replica-a', SHORT_LEASE_MS))!;
        const b1 = (await second.claimNext('replica-b', SHORT_LEASE_MS))!;
        const a2 = (await second.claimNext('replica-a', SHORT_LEASE_MS))!;
        const held = (task: StoredTask): HeldTask => ({ id: task.id, state: task.state, token: task.control.lease!.token });
        const before = Date.now();
        const renewed = await repo.renewLeases('replica-a', LONG_LEASE_MS);
        expect(byId(renewed)).toEqual(byId([held(a1), held(a2)]));
        for (const task of [a1, a2]) {
          const lease = (await second.getUnscoped(task.id))?.control.lease;
          expect(lease).toEqual({ ...task.control.lease, until: expect.any(Number) });
          expect(lease!.until).toBeGreaterThanOrEqual(before + LONG_LEASE_MS);
        }
        expect((await repo.getUnscoped(b1.id))?.control).toEqual(b1.control);
        expect(byId(await second.heldBy('replica-a'))).toEqual(byId(renewed));
        expect(await repo.heldBy('replica-b')).toEqual([held(b1)]);
        expect(await repo.countHeld('replica-a')).toBe(2);
        expect(await second.countHeld('replica-b')).toBe(1);
        expect(await repo.heldBy('nobody')).toEqual([]);
        expect(await repo.countHeld('nobody')).toBe(0);
        expect(await repo.renewLeases('nobody', LONG_LEASE_MS)).toEqual([]);
        await repo.patch(a1.id, byHolder(a1, { from: [TesState.INITIALIZING], to: TesState.RUNNING }));
        expect(byId(await repo.heldBy('replica-a'))).toEqual(byId([{ ...held(a1), state: TesState.RUNNING }, held(a2)]));
        await expire();
        expect((await repo.findExpiredLeases(Date.now(), 10)).map((t) => t.id)).toEqual([b1.id]);
        // Held until taken over: an expired lease is still its holder's and still renews.
        expect(await repo.heldBy('replica-b')).toEqual([held(b1)]);
        expect(await second.renewLeases('replica-b', LONG_LEASE_MS)).toEqual([held(b1)]);
        expect(await repo.findExpiredLeases(Date.now(), 10)).toEqual([]);
      });

      it('neither takes over nor lists a lease that has not expired; a release lists it at once', async () => {
        const second = await harness.openSecond();
        const task = await claimed('replica-a', LONG_LEASE_MS);
        const token = task.control.lease!.token;
        expect(await second.findExpiredLeases(Date.now(), 10)).toEqual([]);
        expect(await second.takeOver(task.id, token, 'replica-b', LONG_LEASE_MS)).toBeUndefined();
        expect(await repo.getUnscoped(task.id)).toEqual(task);
        expect(await repo.releaseLease(task.id, 'not-the-token')).toBe(false);
        expect(await repo.releaseLease(task.id, token)).toBe(true);
        const listed = await second.findExpiredLeases(Date.now(), 10);
        expect(listed.map((t) => [t.id, t.control.lease?.token])).toEqual([[task.id, token]]);
        // Released means no one holds it: a heartbeat does not bring it back.
        expect(await repo.heldBy('replica-a')).toEqual([]);
        expect(await repo.countHeld('replica-a')).toBe(0);
        expect(await repo.renewLeases('replica-a', LONG_LEASE_MS)).toEqual([]);
        expect((await second.findExpiredLeases(Date.now(), 10)).map((t) => t.id)).toEqual([task.id]);
        const taken = await second.takeOver(task.id, token, 'replica-b', LONG_LEASE_MS);
        expect(taken?.control.lease?.holder).toBe('replica-b');
        expect(await repo.heldBy('replica-b')).toEqual([{ id: task.id, state: TesState.INITIALIZING, token: taken!.control.lease!.token }]);
      });

      it('takes an expired lease over exactly once under 20 concurrent attempts on two instances', async () => {
        const second = await harness.openSecond();
        const task = await claimed('replica-gone', SHORT_LEASE_MS);
        const token = task.control.lease!.token;
        await expire();
        expect((await second.findExpiredLeases(Date.now(), 10)).map((t) => t.id)).toEqual([task.id]);
        const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? second : repo).takeOver(task.id, token, `replica-${i}`, LONG_LEASE_MS)));
        const winners = results.filter((r): r is StoredTask => r !== undefined);
        expect(winners).toHaveLength(1);
        const [winner] = winners;
        const holder = `replica-${results.indexOf(winner)}`;
        expect(winner).toEqual({ ...task, control: { ...task.control, lease: { holder, until: expect.any(Number), token: expect.any(String) } } });
        expect(winner.control.lease!.token).not.toBe(token);
        expect(await repo.getUnscoped(task.id)).toEqual(winner);
        expect(await second.heldBy('replica-gone')).toEqual([]);
        expect(await second.heldBy(holder)).toEqual([{ id: task.id, state: TesState.INITIALIZING, token: winner.control.lease!.token }]);
        expect(await repo.findExpiredLeases(Date.now(), 10)).toEqual([]);
      });

      it('refuses every use of a fencing token after a take-over', async () => {
        const second = await harness.openSecond();
        const lost = await claimed('replica-a', SHORT_LEASE_MS);
        const oldToken = lost.control.lease!.token;
        await expire();
        const taken = (await second.takeOver(lost.id, oldToken, 'replica-b', SHORT_LEASE_MS))!;
        const newToken = taken.control.lease!.token;
        const update = { seq: 1, ops: [{ op: 'add_system_log', line: 'from the old holder' } as const] };
        expect(await repo.patch(lost.id, byHolder(lost, update))).toEqual({ applied: false, reason: 'fenced' });
        expect(await repo.getUnscoped(lost.id)).toEqual(taken);
        expect((await second.patch(lost.id, byHolder(taken, { ...update, ops: [{ op: 'add_system_log', line: 'from the new holder' }] }))).applied).toBe(true);
        await expire();
        // The new lease has expired too: only its own token may take it over.
        expect(await repo.takeOver(lost.id, oldToken, 'replica-a', LONG_LEASE_MS)).toBeUndefined();
        expect(await repo.takeOver(lost.id, undefined, 'replica-a', LONG_LEASE_MS)).toBeUndefined();
        expect(await repo.releaseLease(lost.id, oldToken)).toBe(false);
        expect((await repo.getUnscoped(lost.id))?.control.lease?.token).toBe(newToken);
        expect(await second.releaseLease(lost.id, newToken)).toBe(true);
        expect((await repo.takeOver(lost.id, newToken, 'replica-a', LONG_LEASE_MS))?.control.lease?.holder).toBe('replica-a');
      });

      it('lists held tasks without a lease as expired, longest expired first, and takes them over by the absent token', async () => {
        const leased = await claimed('replica-a', SHORT_LEASE_MS);
        const unleased = makeTask({ state: TesState.RUNNING });
        await insertAll([unleased, makeTask({ state: TesState.COMPLETE }), makeTask({ state: TesState.QUEUED })]);
        await expire();
        const now = Date.now();
        expect((await repo.findExpiredLeases(now, 10)).map((t) => t.id)).toEqual([unleased.id, leased.id]);
        expect(await repo.findExpiredLeases(now, 1)).toEqual([fresh(unleased)]);
        expect(await repo.takeOver(unleased.id, 'some-token', 'replica-b', LONG_LEASE_MS)).toBeUndefined();
        const taken = await repo.takeOver(unleased.id, undefined, 'replica-b', LONG_LEASE_MS);
        expect(taken).toEqual({ ...fresh(unleased), control: { owner: '', attempt: 0, update_seq: 0, lease: { holder: 'replica-b', until: expect.any(Number), token: expect.any(String) } } });
        expect(await repo.takeOver(unleased.id, undefined, 'replica-c', LONG_LEASE_MS)).toBeUndefined();
        expect((await repo.findExpiredLeases(Date.now(), 10)).map((t) => t.id)).toEqual([leased.id]);
      });
    });

    it('keeps what it stored across a close and reopen', async () => {
      const task = makeTask({ tags: { durable: 'yes' } });
      const second = makeTask();
      await insertAll([task, second]);
      const claim = (await repo.claimNext('replica-a', LONG_LEASE_MS))!;
      const patched = await repo.patch(task.id, byHolder(claim, { seq: 2, ops: [{ op: 'set_backend_ref', ref: { container: 'c1' } }] }));
      const before = await repo.getUnscoped(task.id);
      const token = (await repo.list(EVERY_TASK, { tags: [], pageSize: 1, fields: 'minimal' })).nextPageToken;
      repo = await harness.reopen();
      expect(patched.applied).toBe(true);
      expect(await repo.getUnscoped(task.id)).toEqual(before);
      expect((await repo.getUnscoped(task.id))?.control).toEqual({ owner: '', attempt: 1, update_seq: 2, lease: claim.control.lease, backend_ref: { container: 'c1' } });
      expect(await repo.heldBy('replica-a')).toEqual([{ id: task.id, state: TesState.INITIALIZING, token: claim.control.lease!.token }]);
      expect((await repo.list(EVERY_TASK, { tags: [{ key: 'durable', value: 'yes' }], pageSize: 5, fields: 'minimal' })).tasks).toHaveLength(1);
      // A token issued before the restart still continues where it left off, and new tasks still list first.
      expect((await repo.list(EVERY_TASK, { tags: [], pageSize: 5, pageToken: token, fields: 'minimal' })).tasks.map((t) => t.id)).toEqual([task.id]);
      const third = makeTask();
      await repo.insert(third, '');
      expect((await repo.list(EVERY_TASK, { tags: [], pageSize: 10, fields: 'minimal' })).tasks.map((t) => t.id)).toEqual([third.id, second.id, task.id]);
    });

    it('resolves every insert of a burst, all of them readable afterwards', async () => {
      const burst = Array.from({ length: 300 }, () => makeTask());
      await Promise.all(burst.map((task) => repo.insert(task, '')));
      const page = await repo.list(EVERY_TASK, { tags: [], pageSize: 300, fields: 'minimal' });
      expect(new Set(page.tasks.map((t) => t.id))).toEqual(new Set(burst.map((t) => t.id)));
      expect(page.nextPageToken).toBeUndefined();
    });
  });
}

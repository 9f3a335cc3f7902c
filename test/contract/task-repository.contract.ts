// The TaskRepository contract: every store implementation runs this suite unchanged.
import { DomainError, ErrorCode } from '../../src/common/domain-error';
import type { TaskListQuery, TaskRepository } from '../../src/persistence/task-repository';
import { TaskRecord, TesState } from '../../src/tasks/tes-task';

export interface RepositoryHarness {
  repo: TaskRepository;
  /** Closes the store and opens it again on the same data. */
  reopen(): Promise<TaskRepository>;
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

async function expectDomainError(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  await expect(promise).rejects.toBeInstanceOf(DomainError);
  await expect(promise).rejects.toMatchObject({ code });
}

export function describeTaskRepositoryContract(name: string, open: () => Promise<RepositoryHarness>): void {
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
      for (const task of tasks) await repo.insert(task);
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
      await repo.insert(task);
      expect(await repo.get(task.id)).toEqual(task);
    });

    it('refuses a second task with the same id', async () => {
      const task = makeTask();
      await repo.insert(task);
      await expectDomainError(repo.insert({ ...task }), ErrorCode.Conflict);
    });

    it('lets only one of two simultaneous inserts with the same id succeed', async () => {
      const task = makeTask();
      const twin = { ...task, name: 'twin' };
      const results = await Promise.allSettled([repo.insert(task), repo.insert(twin)]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(failed?.reason).toMatchObject({ code: ErrorCode.Conflict });
      expect(await repo.get(task.id)).toEqual(results[0].status === 'fulfilled' ? task : twin);
    });

    it('stores the task as it was when insert was called', async () => {
      const task = makeTask({ tags: { a: '1' } });
      const copy = structuredClone(task);
      const stored = repo.insert(task);
      task.name = 'changed later';
      task.tags!.a = '2';
      await stored;
      expect(await repo.get(task.id)).toEqual(copy);
    });

    it('keeps the other tasks of a batch when one id is a duplicate', async () => {
      const existing = makeTask();
      await repo.insert(existing);
      const fresh = makeTask();
      const results = await Promise.allSettled([repo.insert({ ...existing }), repo.insert(fresh)]);
      expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled']);
      expect(await repo.get(fresh.id)).toEqual(fresh);
    });

    it('returns undefined for an unknown id', async () => {
      expect(await repo.get('no-such-task')).toBeUndefined();
    });

    it('lists newest first and pages without gaps or repeats', async () => {
      const tasks = Array.from({ length: 7 }, () => makeTask());
      await insertAll(tasks);
      const seen: string[] = [];
      let token: string | undefined;
      let pages = 0;
      do {
        const page = await repo.list({ tags: [], pageSize: 3, pageToken: token, fields: 'minimal' });
        seen.push(...page.tasks.map((t) => t.id));
        token = page.nextPageToken;
        pages += 1;
      } while (token);
      expect(pages).toBe(3);
      expect(seen).toEqual(tasks.map((t) => t.id).reverse());
    });

    it('gives no next_page_token when the page holds the last task', async () => {
      await insertAll([makeTask(), makeTask()]);
      expect((await repo.list({ tags: [], pageSize: 2, fields: 'minimal' })).nextPageToken).toBeUndefined();
      expect((await repo.list({ tags: [], pageSize: 1, fields: 'minimal' })).nextPageToken).toEqual(expect.any(String));
    });

    it('keeps paging stable while new tasks arrive', async () => {
      const old = Array.from({ length: 4 }, () => makeTask());
      await insertAll(old);
      const first = await repo.list({ tags: [], pageSize: 2, fields: 'minimal' });
      await insertAll([makeTask(), makeTask()]);
      const second = await repo.list({ tags: [], pageSize: 2, pageToken: first.nextPageToken, fields: 'minimal' });
      expect([...first.tasks, ...second.tasks].map((t) => t.id)).toEqual(old.map((t) => t.id).reverse());
      expect(second.nextPageToken).toBeUndefined();
    });

    it('rejects a page token it did not issue', async () => {
      await insertAll([makeTask(), makeTask(), makeTask()]);
      const issued = (await repo.list({ tags: [], pageSize: 1, fields: 'minimal' })).nextPageToken!;
      const foreign = ['garbage', 'eyJ4IjoxfQ', '', '!!!', 'czEuLTE', 'null', 'e30', 'eyJhZnRlciI6LTF9', 'eyJhZnRlciI6IjEifQ', `${issued}x`, `${issued}==`, ' '.repeat(4), 'a'.repeat(5000)];
      for (const token of foreign) {
        const attempt = repo.list({ tags: [], pageSize: 5, pageToken: token, fields: 'minimal' });
        await expectDomainError(attempt, ErrorCode.InvalidArgument);
        await expect(attempt).rejects.toThrow(/^page_token: /);
      }
      expect((await repo.list({ tags: [], pageSize: 5, pageToken: issued, fields: 'minimal' })).tasks).toHaveLength(2);
    });

    it('pages through filtered lists with the same guarantees', async () => {
      const tagged = Array.from({ length: 5 }, () => makeTask({ tags: { run: 'r1' }, state: TesState.COMPLETE }));
      const tasks = [...tagged, makeTask({ tags: { run: 'r2' } }), makeTask({ tags: { run: 'r1' } }), makeTask()];
      await insertAll(tasks);
      const walk = async (query: Omit<TaskListQuery, 'pageSize' | 'pageToken'>) => {
        const ids: string[] = [];
        let token: string | undefined;
        do {
          const page = await repo.list({ ...query, pageSize: 2, pageToken: token });
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

    it('filters by name prefix literally and case-sensitively', async () => {
      const names = ['f9327c19-a', 'ComplianceTest-f9327c19', 'F9327C19-upper', 'f9327c19', '100%_done', '100xxdone'];
      await insertAll(names.map((name) => makeTask({ name })));
      const names1 = (await repo.list({ namePrefix: 'f9327c19', tags: [], pageSize: 10, fields: 'full' })).tasks.map((t) => t.name);
      expect(names1.sort()).toEqual(['f9327c19', 'f9327c19-a']);
      const names2 = (await repo.list({ namePrefix: '100%_', tags: [], pageSize: 10, fields: 'full' })).tasks.map((t) => t.name);
      expect(names2).toEqual(['100%_done']);
      expect((await repo.list({ namePrefix: 'f9327C19', tags: [], pageSize: 10, fields: 'minimal' })).tasks).toEqual([]);
    });

    it('matches name prefixes with characters outside the basic plane', async () => {
      const names = ['🧬-run-1', '🧬', '🧪-run', 'x🧬', 'ü-1', 'u-1'];
      await insertAll(names.map((name) => makeTask({ name })));
      const match = async (namePrefix: string) =>
        (await repo.list({ namePrefix, tags: [], pageSize: 10, fields: 'full' })).tasks.map((t) => t.name).sort();
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
      const page = await repo.list({ namePrefix: 'job-', state: TesState.RUNNING, tags: [{ key: 'team', value: 'a' }, { key: 'env' }], pageSize: 10, fields: 'minimal' });
      expect(page).toEqual({ tasks: [{ id: hit.id, state: TesState.RUNNING }] });
    });

    it('filters by state', async () => {
      const done = makeTask({ state: TesState.COMPLETE });
      await insertAll([makeTask(), done, makeTask({ state: TesState.RUNNING })]);
      const page = await repo.list({ state: TesState.COMPLETE, tags: [], pageSize: 10, fields: 'minimal' });
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
        (await repo.list({ tags, pageSize: 10, fields: 'minimal' })).tasks.map((t) => t.id).sort();
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

    it('lists by the name and tags a task has after an update', async () => {
      const task = makeTask({ name: 'before', tags: { phase: 'one', keep: 'k' } });
      await repo.insert(task);
      await repo.update(task.id, [TesState.QUEUED], (t) => {
        t.name = 'after';
        t.tags = { phase: 'two', keep: 'k', added: '' };
      });
      const ids = async (query: Partial<TaskListQuery>) => (await repo.list({ tags: [], pageSize: 10, fields: 'minimal', ...query })).tasks.map((t) => t.id);
      expect(await ids({ namePrefix: 'before' })).toEqual([]);
      expect(await ids({ namePrefix: 'after' })).toEqual([task.id]);
      expect(await ids({ tags: [{ key: 'phase', value: 'one' }] })).toEqual([]);
      expect(await ids({ tags: [{ key: 'phase', value: 'two' }, { key: 'keep', value: 'k' }, { key: 'added' }] })).toEqual([task.id]);
    });

    it('reads only id and state for minimal lists', async () => {
      const task = makeTask({ name: 'n', tags: { a: 'b' } });
      await repo.insert(task);
      expect((await repo.list({ tags: [], pageSize: 1, fields: 'minimal' })).tasks[0]).toEqual({ id: task.id, state: TesState.QUEUED });
      expect((await repo.list({ tags: [], pageSize: 1, fields: 'full' })).tasks[0]).toEqual(task);
    });

    it('transitions with compare-and-set', async () => {
      const task = makeTask();
      await repo.insert(task);
      const moved = await repo.transition(task.id, [TesState.QUEUED], TesState.INITIALIZING, (t) => {
        t.logs.push({ logs: [], outputs: [], system_logs: ['claimed'] });
      });
      expect(moved?.state).toBe(TesState.INITIALIZING);
      expect(moved?.logs[0].system_logs).toEqual(['claimed']);
      expect(await repo.transition(task.id, [TesState.QUEUED], TesState.INITIALIZING)).toBeUndefined();
      expect(await repo.transition('missing', [TesState.QUEUED], TesState.INITIALIZING)).toBeUndefined();
      expect((await repo.get(task.id))?.state).toBe(TesState.INITIALIZING);
    });

    it('lets exactly one of many concurrent claims win', async () => {
      const task = makeTask();
      await repo.insert(task);
      const results = await Promise.all(Array.from({ length: 10 }, () => repo.transition(task.id, [TesState.QUEUED], TesState.INITIALIZING)));
      expect(results.filter(Boolean)).toHaveLength(1);
      expect((await repo.get(task.id))?.state).toBe(TesState.INITIALIZING);
    });

    it('applies every one of many concurrent updates', async () => {
      const task = makeTask({ logs: [{ logs: [], outputs: [], system_logs: [] }] });
      await repo.insert(task);
      await Promise.all(Array.from({ length: 20 }, (_, i) => repo.update(task.id, [TesState.QUEUED], (t) => t.logs[0].system_logs.push(`line ${i}`))));
      expect((await repo.get(task.id))?.logs[0].system_logs.sort()).toEqual(Array.from({ length: 20 }, (_, i) => `line ${i}`).sort());
    });

    it('ignores id and state changes made by a mutation', async () => {
      const task = makeTask();
      await repo.insert(task);
      await repo.update(task.id, [TesState.QUEUED], (t) => {
        t.id = 'other';
        t.state = TesState.COMPLETE;
        t.name = 'renamed';
      });
      expect(await repo.get(task.id)).toMatchObject({ id: task.id, state: TesState.QUEUED, name: 'renamed' });
      expect(await repo.get('other')).toBeUndefined();
    });

    it('changes nothing when a mutation throws, and hands out copies', async () => {
      const task = makeTask({ tags: { a: 'b' } });
      await repo.insert(task);
      const boom = new Error('mutation failed');
      await expect(
        repo.update(task.id, [TesState.QUEUED], (t) => {
          t.name = 'half-done';
          throw boom;
        }),
      ).rejects.toBe(boom);
      expect(await repo.get(task.id)).toEqual(task);
      const updated = await repo.update(task.id, [TesState.QUEUED], (t) => (t.description = 'd'));
      expect(updated).toEqual({ ...task, description: 'd' });
      updated!.description = 'changed by the caller';
      (await repo.get(task.id))!.tags!.a = 'changed by the caller';
      expect(await repo.get(task.id)).toEqual({ ...task, description: 'd' });
    });

    it('updates only in the given states', async () => {
      const task = makeTask({ state: TesState.COMPLETE });
      await repo.insert(task);
      expect(await repo.update(task.id, [TesState.RUNNING], (t) => (t.name = 'x'))).toBeUndefined();
      expect((await repo.get(task.id))?.name).toBeUndefined();
    });

    it('finds tasks by state, oldest first, up to a limit', async () => {
      const queued = [makeTask(), makeTask(), makeTask()];
      await insertAll([queued[0], makeTask({ state: TesState.RUNNING }), queued[1], queued[2]]);
      expect((await repo.findByState([TesState.QUEUED], 2)).map((t) => t.id)).toEqual([queued[0].id, queued[1].id]);
      expect(await repo.findByState([], 5)).toEqual([]);
      const active = await repo.findByState([TesState.RUNNING, TesState.QUEUED], 10);
      expect(active.map((t) => t.state)).toEqual([TesState.QUEUED, TesState.RUNNING, TesState.QUEUED, TesState.QUEUED]);
      expect(active[0]).toEqual(queued[0]);
    });

    it('keeps what it stored across a close and reopen', async () => {
      const task = makeTask({ tags: { durable: 'yes' } });
      const second = makeTask();
      await insertAll([task, second]);
      await repo.transition(task.id, [TesState.QUEUED], TesState.INITIALIZING, (t) => (t.description = 'claimed'));
      const token = (await repo.list({ tags: [], pageSize: 1, fields: 'minimal' })).nextPageToken;
      repo = await harness.reopen();
      expect(await repo.get(task.id)).toEqual({ ...task, state: TesState.INITIALIZING, description: 'claimed' });
      expect((await repo.list({ tags: [{ key: 'durable', value: 'yes' }], pageSize: 5, fields: 'minimal' })).tasks).toHaveLength(1);
      // A token issued before the restart still continues where it left off, and new tasks still list first.
      expect((await repo.list({ tags: [], pageSize: 5, pageToken: token, fields: 'minimal' })).tasks.map((t) => t.id)).toEqual([task.id]);
      const third = makeTask();
      await repo.insert(third);
      expect((await repo.list({ tags: [], pageSize: 10, fields: 'minimal' })).tasks.map((t) => t.id)).toEqual([third.id, second.id, task.id]);
    });

    it('resolves every insert of a burst, all of them readable afterwards', async () => {
      const burst = Array.from({ length: 300 }, () => makeTask());
      await Promise.all(burst.map((task) => repo.insert(task)));
      const page = await repo.list({ tags: [], pageSize: 300, fields: 'minimal' });
      expect(new Set(page.tasks.map((t) => t.id))).toEqual(new Set(burst.map((t) => t.id)));
      expect(page.nextPageToken).toBeUndefined();
    });
  });
}

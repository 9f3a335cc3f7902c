// The TaskRepository contract: every store implementation runs this suite unchanged.
import { DomainError, ErrorCode } from '../../src/common/domain-error';
import type { TaskRepository } from '../../src/persistence/task-repository';
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
        name: 'ünïcödé task ✓',
        description: 'a description',
        inputs: [
          { path: '/data/a', url: 'https://example.org/a', type: 'FILE' },
          { path: '/data/b', content: 'inline', type: 'FILE' },
        ],
        outputs: [{ path: '/out/*.txt', path_prefix: '/out', url: 'file:///tmp/out', type: 'FILE' }],
        resources: { cpu_cores: 2, ram_gb: 0.5, preemptible: false, zones: ['a'], backend_parameters: { shm_size_gb: '1' } },
        executors: [{ image: 'alpine', command: ['sh', '-c', 'echo $X'], env: { X: 'y' }, workdir: '/data', ignore_error: true }],
        volumes: ['/shared'],
        tags: { project: 'p1', empty: '' },
        logs: [{ logs: [{ start_time: 't0', exit_code: 0, stdout: 'out' }], outputs: [{ url: 'u', path: 'p', size_bytes: '3' }], system_logs: ['note'], metadata: { k: 'v' } }],
      });
      await repo.insert(task);
      expect(await repo.get(task.id)).toEqual(task);
    });

    it('refuses a second task with the same id', async () => {
      const task = makeTask();
      await repo.insert(task);
      await expectDomainError(repo.insert({ ...task }), ErrorCode.Conflict);
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
      for (const token of ['garbage', 'eyJ4IjoxfQ', '', '!!!', 'czEuLTE']) {
        await expectDomainError(repo.list({ tags: [], pageSize: 5, pageToken: token, fields: 'minimal' }), ErrorCode.InvalidArgument);
      }
    });

    it('filters by name prefix literally and case-sensitively', async () => {
      const names = ['f9327c19-a', 'ComplianceTest-f9327c19', 'F9327C19-upper', 'f9327c19', '100%_done', '100xxdone'];
      await insertAll(names.map((name) => makeTask({ name })));
      const names1 = (await repo.list({ namePrefix: 'f9327c19', tags: [], pageSize: 10, fields: 'full' })).tasks.map((t) => t.name);
      expect(names1.sort()).toEqual(['f9327c19', 'f9327c19-a']);
      const names2 = (await repo.list({ namePrefix: '100%_', tags: [], pageSize: 10, fields: 'full' })).tasks.map((t) => t.name);
      expect(names2).toEqual(['100%_done']);
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
    });

    it('keeps what it stored across a close and reopen', async () => {
      const task = makeTask({ tags: { durable: 'yes' } });
      await repo.insert(task);
      await repo.transition(task.id, [TesState.QUEUED], TesState.INITIALIZING);
      repo = await harness.reopen();
      expect(await repo.get(task.id)).toEqual({ ...task, state: TesState.INITIALIZING });
      expect((await repo.list({ tags: [{ key: 'durable', value: 'yes' }], pageSize: 5, fields: 'minimal' })).tasks).toHaveLength(1);
    });
  });
}

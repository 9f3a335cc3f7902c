// The scheduler with real parts: SQLite files, the local backend with the process runtime, several schedulers on one
// store. The faults are injected around the real store (a write refused as busy), never mocked inside it.
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createLogger } from '../../src/common/logger';
import { createComputeBackend } from '../../src/compute/compute.module';
import { loadSettings } from '../../src/config/settings.loader';
import { DomainError, ErrorCode } from '../../src/domain/domain-error';
import type { PatchResult, TaskPatch } from '../../src/domain/task-patch';
import { StoredTask, TesState } from '../../src/domain/tes-task';
import { SqliteTaskRepository } from '../../src/persistence/sqlite/sqlite-task.repository';
import type { TaskRepository } from '../../src/persistence/task-repository';
import { TaskScheduler } from '../../src/scheduler/task-scheduler';
import { StorageRegistry } from '../../src/storage/storage-registry';
import { sleep } from '../e2e/service-process';

/** The real store, refusing as busy the next `n` patches that end a task. */
class BusyAtTheEnd extends SqliteTaskRepository {
  refusals = 0;

  override patch(id: string, patch: TaskPatch): Promise<PatchResult> {
    if (patch.to === TesState.COMPLETE && this.refusals > 0) {
      this.refusals -= 1;
      return Promise.reject(new DomainError(ErrorCode.Unavailable, 'task store: database is locked (SQLITE_BUSY)', true));
    }
    return super.patch(id, patch);
  }
}

/** The real store, refusing as full (as on a full disk) the next `n` patches that record a lost attempt. */
class FullAtTheRetry extends SqliteTaskRepository {
  refusals = 0;

  override patch(id: string, patch: TaskPatch): Promise<PatchResult> {
    const lost = patch.ops.some((op) => op.op === 'add_system_log' && op.line.includes('was lost'));
    if (lost && this.refusals > 0) {
      this.refusals -= 1;
      return Promise.reject(new DomainError(ErrorCode.StoreFull, 'the task store is full: no space left on the device of its file'));
    }
    return super.patch(id, patch);
  }
}

describe('the scheduler on real parts', () => {
  let dir: string;
  const schedulers: TaskScheduler[] = [];
  const repos: TaskRepository[] = [];

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'tesp-scheduler-'));
  });

  afterEach(async () => {
    await Promise.all(schedulers.splice(0).map((scheduler) => scheduler.stop()));
    await Promise.all(repos.splice(0).map((repo) => repo.close()));
    rmSync(dir, { recursive: true, force: true });
  });

  function replica(holder: string, repo: TaskRepository = new SqliteTaskRepository(path.join(dir, 'tesp.sqlite'))): { scheduler: TaskScheduler; repo: TaskRepository } {
    const settings = loadSettings({
      env: {},
      overrides: {
        data_dir: dir,
        'scheduler.holder_id': holder,
        'scheduler.poll_interval_ms': 50,
        'scheduler.lease_ms': 1000,
        'compute.local.runtime': 'process',
        'logging.level': 'silent',
      },
    });
    const logger = createLogger('silent');
    const backend = createComputeBackend(settings.compute, dir, StorageRegistry.fromSettings(settings.storage), logger);
    const scheduler = new TaskScheduler(repo, backend, settings.scheduler, logger);
    scheduler.start();
    schedulers.push(scheduler);
    repos.push(repo);
    return { scheduler, repo };
  }

  async function insert(repo: TaskRepository, id: string, command: string[]): Promise<void> {
    await repo.insert({ id, state: TesState.QUEUED, creation_time: new Date().toISOString(), executors: [{ image: 'x', command }], logs: [] }, '');
  }

  async function until(repo: TaskRepository, id: string, done: (task: StoredTask) => boolean, timeoutMs = 20_000): Promise<StoredTask> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const task = await repo.getUnscoped(id);
      if (task && done(task)) return task;
      if (Date.now() > deadline) throw new Error(`task ${id}: ${JSON.stringify(task)}`);
      await sleep(25);
    }
  }

  it('writes the end of a run the store refused as busy at a later heartbeat, and the task ends', async () => {
    const store = new BusyAtTheEnd(path.join(dir, 'tesp.sqlite'));
    // More refusals than the applier's own tries: the heartbeat has to write it.
    store.refusals = 7;
    const { scheduler, repo } = replica('a', store);
    await insert(repo, 't-busy', ['echo', 'done']);
    scheduler.taskCreated();
    const task = await until(repo, 't-busy', (t) => t.state === TesState.COMPLETE);
    expect(store.refusals).toBe(0);
    expect(task.logs[0].logs[0]).toMatchObject({ exit_code: 0, stdout: 'done\n' });
    expect(task.control.lease).toBeUndefined();
  });

  it('fences a holder whose task was taken over: its late reports change nothing, and it lets the run go', async () => {
    const a = replica('a');
    await insert(a.repo, 't-fenced', ['sh', '-c', 'sleep 1; echo first run']);
    a.scheduler.taskCreated();
    const running = await until(a.repo, 't-fenced', (t) => Boolean(t.logs[0]?.logs[0]?.start_time));
    expect(running.control.lease?.holder).toBe('a');
    // As if a's renewals had stopped reaching the store: its lease ends, and b takes the task over.
    expect(await a.repo.releaseLease('t-fenced', running.control.lease!.token)).toBe(true);
    const b = replica('b');
    const done = await until(b.repo, 't-fenced', (t) => t.state === TesState.COMPLETE);
    // b could not adopt a's processes (sh and its sleep): it ended them and ran the task again as attempt 2.
    expect(done.logs).toHaveLength(2);
    expect(done.logs[0].system_logs.join('\n')).toMatch(/attempt 1 was lost: taken over by b from a after its lease ended; .*\(ended 2 process\(es\) its earlier run left\)/);
    expect(done.logs[1].logs[0].stdout).toBe('first run\n');
    // a's run reported the SIGTERM of its executor after the take-over: refused, so attempt 1 shows no end of it.
    expect(done.logs[0].logs[0].exit_code).toBeUndefined();
    expect(await a.repo.heldBy('a')).toEqual([]);
  });

  it('takes a task over again when the store refused the write of its take-over, instead of holding it forever', async () => {
    const a = replica('a');
    await insert(a.repo, 't-retry', ['sh', '-c', 'sleep 1; echo ran']);
    a.scheduler.taskCreated();
    await until(a.repo, 't-retry', (t) => Boolean(t.logs[0]?.logs[0]?.start_time));
    // a stops (its processes with it) and releases its lease: b takes the task over, and cannot record that at first.
    await a.scheduler.stop();
    const store = new FullAtTheRetry(path.join(dir, 'tesp.sqlite'));
    store.refusals = 1;
    const b = replica('b', store);
    const done = await until(b.repo, 't-retry', (t) => t.state === TesState.COMPLETE);
    expect(store.refusals).toBe(0);
    expect(done.logs.at(-1)?.logs[0]?.stdout).toBe('ran\n');
    expect(done.control.lease).toBeUndefined();
  });
});

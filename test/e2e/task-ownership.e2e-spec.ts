// Ownership at the service level: two users and an admin, as constructed principals, drive the real TasksService
// of the real application (SQLite store, process runtime). Neither user lists, reads nor cancels the other's
// tasks (NOT_FOUND, worded as for a task that does not exist); the admin sees and cancels both.
import { DomainError, ErrorCode } from '../../src/domain/domain-error';
import type { Principal } from '../../src/domain/principal';
import { TASK_REPOSITORY, TaskRepository } from '../../src/persistence/task-repository';
import { TasksService } from '../../src/tasks/tasks.service';
import { InProcessApp, startInProcessApp } from '../support/in-process-app';

const user = (name: string): Principal => ({ name, admin: false, groups: [], via: 'basic' });
const alice = user('alice');
const bob = user('bob');
const admin: Principal = { name: 'root', admin: true, groups: [], via: 'basic' };

/** The error a call failed with (it must fail). */
async function failure(call: Promise<unknown>): Promise<DomainError> {
  const outcome = await call.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(outcome).toBeInstanceOf(DomainError);
  return outcome as DomainError;
}

describe('task ownership through TasksService', () => {
  let server: InProcessApp;
  let tasks: TasksService;
  let repo: TaskRepository;

  beforeAll(async () => {
    // One task runs at a time: the first (a long sleep) runs, the others wait QUEUED.
    server = await startInProcessApp({ 'compute.local.runtime': 'process', 'compute.local.max_concurrent_tasks': 1 });
    tasks = server.app.get(TasksService);
    repo = server.app.get<TaskRepository>(TASK_REPOSITORY);
  });

  afterAll(async () => {
    await server?.close();
  });

  const sleeper = (name: string) => ({ name, tags: { suite: 'two-users' }, executors: [{ image: 'none', command: ['sleep', '300'] }] });

  async function stateOf(id: string): Promise<string> {
    return (await tasks.get(id, {}, admin)).state as string;
  }

  async function until(id: string, state: string): Promise<void> {
    for (let i = 0; i < 600 && (await stateOf(id)) !== state; i++) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await stateOf(id)).toBe(state);
  }

  it('records the creator as owner and scopes reads, lists and cancels to it', async () => {
    const running = (await tasks.create(sleeper('first-running'), alice)).id;
    await until(running, 'RUNNING');
    const queued = (await tasks.create(sleeper('first-queued'), alice)).id;
    const bobs = (await tasks.create(sleeper('second-queued'), bob)).id;
    expect((await repo.getUnscoped(running))?.control.owner).toBe('alice');
    expect((await repo.getUnscoped(bobs))?.control.owner).toBe('bob');

    // Another's task reads exactly as one that does not exist, in every view.
    const missing = await failure(tasks.get('no-such-task', {}, bob));
    for (const view of ['MINIMAL', 'BASIC', 'FULL']) {
      const refused = await failure(tasks.get(running, { view }, bob));
      expect(refused.code).toBe(ErrorCode.NotFound);
      expect(refused.message).toBe(missing.message.replace('no-such-task', running));
    }
    expect((await tasks.get(running, { view: 'FULL' }, alice)).id).toBe(running);
    // No owner anywhere in a view.
    expect(JSON.stringify(await tasks.get(running, { view: 'FULL' }, alice))).not.toMatch(/alice|owner/);

    const ids = async (caller: Principal, query: Record<string, unknown> = {}) => (await tasks.list(query, caller)).tasks.map((t) => t.id);
    expect(await ids(alice)).toEqual([queued, running]);
    expect(await ids(bob, { view: 'FULL' })).toEqual([bobs]);
    expect(await ids(admin, { tag_key: 'suite', tag_value: 'two-users' })).toEqual([bobs, queued, running]);
    expect(await ids(alice, { state: 'QUEUED' })).toEqual([queued]);
    // Paging within a scope: one at a time through Alice's two.
    const first = await tasks.list({ page_size: '1' }, alice);
    const second = await tasks.list({ page_size: '1', page_token: first.next_page_token }, alice);
    expect([...first.tasks, ...second.tasks].map((t) => t.id)).toEqual([queued, running]);
    expect(second.next_page_token).toBeUndefined();

    // Bob cancels neither of Alice's tasks, running or queued: NOT_FOUND, and nothing changes.
    const before = await repo.getUnscoped(running);
    const queuedBefore = await repo.getUnscoped(queued);
    for (const id of [running, queued]) {
      const refused = await failure(tasks.cancel(id, bob));
      expect(refused.code).toBe(ErrorCode.NotFound);
      expect(refused.message).toBe(`task ${id} not found`);
    }
    expect(await repo.getUnscoped(running)).toEqual(before);
    expect(await repo.getUnscoped(queued)).toEqual(queuedBefore);

    // Alice cancels her own; the admin cancels Bob's.
    await tasks.cancel(queued, alice);
    expect(await stateOf(queued)).toBe('CANCELED');
    await tasks.cancel(running, alice);
    await until(running, 'CANCELED');
    // Bob's may have started meanwhile (Alice's run freed the capacity): it ends CANCELED either way.
    await tasks.cancel(bobs, admin);
    await until(bobs, 'CANCELED');
    expect((await tasks.get(bobs, {}, bob)).state).toBe('CANCELED');
  });
});

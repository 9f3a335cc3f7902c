// The lifecycle in-process with the process runtime (no Docker needed): tasks run through the API, and a task
// left active without a run is settled by the orphan sweep instead of staying RUNNING forever.
import { InProcessApp, startInProcessApp } from '../support/in-process-app';
import { TASK_REPOSITORY, TaskRepository } from '../../src/persistence/task-repository';
import { TesState } from '../../src/tasks/tes-task';
import { sleep } from './service-process';

describe('task lifecycle with the process runtime', () => {
  let server: InProcessApp;
  let base: string;

  beforeAll(async () => {
    server = await startInProcessApp({
      'scheduler.dispatch_delay_ms': 0,
      'scheduler.poll_interval_ms': 50,
      'compute.local.runtime': 'process',
    });
    base = `${server.root}/ga4gh/tes/v1`;
  });

  afterAll(async () => {
    await server?.close();
  });

  async function waitForState(id: string, states: string[], timeoutMs = 20_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    let task: any;
    while (Date.now() < deadline) {
      task = await (await fetch(`${base}/tasks/${id}?view=FULL`)).json();
      if (states.includes(task.state)) return task;
      await sleep(50);
    }
    throw new Error(`task ${id} stayed ${task?.state}`);
  }

  it('runs a task through the API to COMPLETE', async () => {
    const res = await fetch(`${base}/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ executors: [{ image: 'ignored', command: ['echo', 'from a process'] }] }),
    });
    const { id } = (await res.json()) as { id: string };
    const task = await waitForState(id, ['COMPLETE', 'EXECUTOR_ERROR', 'SYSTEM_ERROR']);
    expect(task.state).toBe('COMPLETE');
    expect(task.logs[0].logs[0]).toMatchObject({ exit_code: 0, stdout: 'from a process\n' });
  });

  it('ends a task that is RUNNING without a run SYSTEM_ERROR with the reason', async () => {
    const repo = server.app.get<TaskRepository>(TASK_REPOSITORY);
    const id = 'orphan-' + Date.now();
    await repo.insert({ id, state: TesState.RUNNING, creation_time: new Date().toISOString(), executors: [{ image: 'x', command: ['true'] }], logs: [] });
    const task = await waitForState(id, ['SYSTEM_ERROR']);
    expect(task.logs[0].system_logs.join('\n')).toMatch(/lost after its run stopped reporting: the process runtime cannot adopt executors/);
  });
});

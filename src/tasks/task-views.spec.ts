import { renderTask } from './task-views';
import { TaskRecord, TaskView, TesState } from '../domain/tes-task';

const task: TaskRecord = {
  id: 'v1',
  state: TesState.RUNNING,
  name: 'n',
  creation_time: '2026-01-01T00:00:00Z',
  inputs: [{ path: '/in', content: 'inline', type: 'FILE' }, { path: '/web', url: 'https://u:pw@example.org/x', type: 'FILE' }],
  outputs: [{ path: '/out', url: 'file:///data/out', type: 'FILE' }],
  resources: { cpu_cores: 2 },
  executors: [{ image: 'alpine', command: ['true'] }],
  logs: [
    {
      logs: [{ start_time: 't1', end_time: 't2', stdout: 'o', stderr: 'e', exit_code: 1 }, { start_time: 't3', stdout: 'live' }],
      outputs: [{ url: 'https://u:pw@example.org/up', path: '/out', size_bytes: '12' }],
      system_logs: ['note'],
    },
  ],
};

describe('task views', () => {
  it('MINIMAL is only id and state', () => {
    expect(renderTask(task, TaskView.MINIMAL)).toEqual({ id: 'v1', state: 'RUNNING' });
  });

  it('BASIC leaves out content, stdout, stderr and system_logs', () => {
    const view = renderTask(task, TaskView.BASIC) as any;
    expect(view.inputs[0]).toEqual({ path: '/in', type: 'FILE' });
    expect(view.logs[0].logs[0]).toEqual({ start_time: 't1', end_time: 't2', exit_code: 1 });
    expect(view.logs[0]).not.toHaveProperty('system_logs');
  });

  it('FULL has everything, with credentials hidden and a running executor reported with exit_code 0', () => {
    const view = renderTask(task, TaskView.FULL) as any;
    expect(view.inputs[0].content).toBe('inline');
    expect(view.inputs[1].url).toBe('https://***@example.org/x');
    expect(view.logs[0].outputs).toEqual([{ url: 'https://***@example.org/up', path: '/out', size_bytes: '12' }]);
    expect(view.logs[0].logs[1]).toEqual({ start_time: 't3', stdout: 'live', stderr: '', exit_code: 0 });
    expect(view.logs[0].system_logs).toEqual(['note']);
  });

  it('emits only spec fields, whatever else a stored document carries, and string map values', () => {
    const stored = {
      ...task,
      internal: 'x',
      inputs: [{ path: '/in', url: 'https://example.org/a', sha256: 'abc' } as never],
      executors: [{ image: 'alpine', command: ['true'], runtime_id: 'c1' } as never],
      resources: { cpu_cores: 1.5, gpu: 1 } as never,
      logs: [{ logs: [{ exit_code: 0, pid: 7 } as never], outputs: [], system_logs: [], metadata: { n: 5 as never, gone: null as never } }],
    };
    const view = renderTask(stored, TaskView.FULL) as any;
    expect(view).not.toHaveProperty('internal');
    expect(view.inputs).toEqual([{ path: '/in', url: 'https://example.org/a', type: 'FILE' }]);
    expect(view.executors).toEqual([{ image: 'alpine', command: ['true'] }]);
    expect(view.resources).toEqual({ cpu_cores: 2 });
    expect(view.logs[0]).toEqual({ logs: [{ stdout: '', stderr: '', exit_code: 0 }], outputs: [], system_logs: [], metadata: { n: '5' } });
  });

  it('gives every task log logs and outputs arrays, and every executor log an exit_code', () => {
    const sparse = { ...task, logs: [{ system_logs: ['x'] } as never, { logs: [null as never] } as never] };
    const basic = renderTask(sparse, TaskView.BASIC) as any;
    expect(basic.logs).toEqual([{ logs: [], outputs: [] }, { logs: [{ exit_code: 0 }], outputs: [] }]);
    expect((renderTask(sparse, TaskView.FULL) as any).logs[1].system_logs).toEqual([]);
  });

  it('emits no null or undefined fields', () => {
    const view = renderTask({ ...task, name: undefined, description: null as never, tags: undefined }, TaskView.FULL);
    expect(JSON.stringify(view)).not.toMatch(/null/);
    expect(view).not.toHaveProperty('name');
    expect(view).not.toHaveProperty('description');
  });

  it('never shows what the server keeps beside a task: lease, token, attempt counters, backend reference', () => {
    const stored = {
      ...task,
      control: { attempt: 2, update_seq: 17, lease: { holder: 'replica-a', until: 1, token: 'secret-token' }, backend_ref: { runtime: 'docker', location: 'docker engine X' } },
    };
    for (const view of [TaskView.MINIMAL, TaskView.BASIC, TaskView.FULL]) {
      const text = JSON.stringify(renderTask(stored, view));
      expect(text).not.toMatch(/control|lease|secret-token|replica-a|update_seq|docker engine X/);
    }
  });
});

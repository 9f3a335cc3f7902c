import { applyTaskPatch, patchForUpdate, TaskPatch } from './task-patch';
import { StoredTask, TesState } from './tes-task';

const running = (overrides: Partial<StoredTask> = {}): StoredTask => ({
  id: 't1',
  state: TesState.RUNNING,
  creation_time: '2026-01-01T00:00:00Z',
  executors: [{ image: 'alpine', command: ['true'] }],
  logs: [{ logs: [], outputs: [], system_logs: [], start_time: '2026-01-01T00:00:01Z' }],
  control: { attempt: 1, update_seq: 4, lease: { holder: 'a', until: 10, token: 'tok' } },
  ...overrides,
});

const run = { attempt: 1, leaseToken: 'tok' };

function applied(task: StoredTask, patch: TaskPatch): StoredTask {
  const result = applyTaskPatch(task, patch);
  if (!result.applied) throw new Error(`refused: ${result.reason}`);
  return result.task;
}

describe('task patches', () => {
  it('record a run in order and drop what arrives twice or late', () => {
    const task = running();
    const started = applied(task, patchForUpdate({ kind: 'executor-started', index: 0, startTime: 't0' }, { ...run, seq: 5 }, 'now'));
    expect(started.logs[0].logs[0]).toEqual({ start_time: 't0' });
    expect(started.control.update_seq).toBe(5);
    // The same update again, and an older one, change nothing.
    expect(applyTaskPatch(started, patchForUpdate({ kind: 'executor-started', index: 0, startTime: 't0' }, { ...run, seq: 5 }, 'now'))).toEqual({ applied: false, reason: 'stale' });
    expect(applyTaskPatch(started, patchForUpdate({ kind: 'system-log', message: 'late' }, { ...run, seq: 3 }, 'now'))).toEqual({ applied: false, reason: 'stale' });
    const finished = applied(started, patchForUpdate({ kind: 'executor-finished', index: 0, endTime: 't1', exitCode: 3, stdout: 'o', stderr: 'e' }, { ...run, seq: 6 }, 'now'));
    expect(finished.logs[0].logs[0]).toEqual({ start_time: 't0', end_time: 't1', exit_code: 3, stdout: 'o', stderr: 'e' });
    // The input is never changed.
    expect(task.logs[0].logs).toEqual([]);
  });

  it('refuse a writer that lost its lease, another attempt, and a state the patch does not apply in', () => {
    const task = running();
    expect(applyTaskPatch(task, patchForUpdate({ kind: 'running' }, { attempt: 1, seq: 9, leaseToken: 'old' }, 'now'))).toEqual({ applied: false, reason: 'state' });
    expect(applyTaskPatch(task, patchForUpdate({ kind: 'system-log', message: 'x' }, { attempt: 1, seq: 9, leaseToken: 'old' }, 'now'))).toEqual({ applied: false, reason: 'fenced' });
    expect(applyTaskPatch(task, patchForUpdate({ kind: 'system-log', message: 'x' }, { attempt: 2, seq: 9, leaseToken: 'tok' }, 'now'))).toEqual({ applied: false, reason: 'attempt' });
    const done = running({ state: TesState.COMPLETE });
    expect(applyTaskPatch(done, patchForUpdate({ kind: 'system-log', message: 'x' }, { ...run, seq: 9 }, 'now'))).toEqual({ applied: false, reason: 'state' });
  });

  it('check every state change against the state machine', () => {
    const patch: TaskPatch = { from: [TesState.RUNNING], to: TesState.QUEUED, attempt: 1, ops: [] };
    expect(applyTaskPatch(running(), patch)).toEqual({ applied: false, reason: 'state' });
  });

  it('add system log lines and outputs once however often they are replayed', () => {
    const patch: TaskPatch = {
      from: [TesState.RUNNING],
      attempt: 1,
      ops: [
        { op: 'add_system_log', line: 'hello' },
        { op: 'add_outputs', outputs: [{ url: 'file:///o', path: '/out', size_bytes: '3' }] },
        { op: 'merge_metadata', values: { k: 'v' } },
      ],
    };
    const twice = applied(applied(running(), patch), patch);
    expect(twice.logs[0]).toMatchObject({ system_logs: ['hello'], outputs: [{ url: 'file:///o', path: '/out', size_bytes: '3' }], metadata: { k: 'v' } });
  });

  it('end a run: state, end time and reason; a finished task is held by no one', () => {
    const task = applied(running(), patchForUpdate({ kind: 'finished', state: 'SYSTEM_ERROR' }, { ...run, seq: 5 }, '2026-01-01T00:01:00Z'));
    expect(task.state).toBe(TesState.SYSTEM_ERROR);
    expect(task.logs[0].end_time).toBe('2026-01-01T00:01:00Z');
    expect(task.logs[0].system_logs).toEqual(['the compute backend reported a system error without a reason']);
    expect(task.control.lease).toBeUndefined();
  });

  it('leave the end to a cancel in progress', () => {
    const canceling = running({ state: TesState.CANCELING });
    expect(applyTaskPatch(canceling, patchForUpdate({ kind: 'finished', state: 'COMPLETE' }, { ...run, seq: 5 }, 'now'))).toEqual({ applied: false, reason: 'state' });
    // What the run reports while it is being stopped still counts.
    const killed = applied(canceling, patchForUpdate({ kind: 'executor-finished', index: 0, endTime: 't', exitCode: 143, stdout: '', stderr: '' }, { ...run, seq: 5 }, 'now'));
    expect(killed.logs[0].logs[0].exit_code).toBe(143);
  });

  it('open a new attempt with its own log, a fresh sequence and no backend reference', () => {
    const task = running({ control: { attempt: 1, update_seq: 40, lease: { holder: 'b', until: 10, token: 'tok' }, backend_ref: { runtime: 'process' } } });
    const next = applied(task, {
      from: [TesState.RUNNING],
      to: TesState.INITIALIZING,
      attempt: 1,
      lease_token: 'tok',
      ops: [{ op: 'add_system_log', line: 'attempt 1 was lost' }],
      next_attempt: { log: { logs: [], outputs: [], system_logs: ['attempt 2'], start_time: 't2' } },
    });
    expect(next.state).toBe(TesState.INITIALIZING);
    expect(next.control).toEqual({ attempt: 2, update_seq: 0, lease: { holder: 'b', until: 10, token: 'tok' } });
    expect(next.logs.map((log) => log.system_logs)).toEqual([['attempt 1 was lost'], ['attempt 2']]);
    // Updates of the new attempt start from seq 1.
    expect(applyTaskPatch(next, patchForUpdate({ kind: 'running' }, { attempt: 2, seq: 1, leaseToken: 'tok' }, 'now')).applied).toBe(true);
  });

  it('write the first log of a task that has none yet', () => {
    const queued = running({ state: TesState.QUEUED, logs: [], control: { attempt: 0, update_seq: 0 } });
    const noted = applied(queued, { from: [TesState.QUEUED], attempt: 0, ops: [{ op: 'add_system_log', line: 'waiting' }] });
    expect(noted.logs).toEqual([{ logs: [], outputs: [], system_logs: ['waiting'] }]);
  });
});

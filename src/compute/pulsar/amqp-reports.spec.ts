import { buildExecutionPlan } from '../../engine/execution-plan';
import { StoredTask, TesState } from '../../domain/tes-task';
import { jobTask, settle, StatusUpdate } from './amqp-reports';

const T = '2026-12-02T00:00:00.000Z';

function task(backendRef: Record<string, string>, overrides: Partial<StoredTask> = {}): StoredTask {
  return {
    id: 't1',
    state: TesState.RUNNING,
    creation_time: T,
    executors: [
      { image: 'alpine', command: ['a'] },
      { image: 'alpine', command: ['b'] },
    ],
    outputs: [{ path: '/out/r.txt', url: 'http://files.example.org/r.txt', type: 'FILE' }],
    logs: [{ logs: [], outputs: [], system_logs: [] }],
    control: { attempt: 1, update_seq: 0, backend_ref: { runner: 'a', job_id: 't1-1', ...backendRef } },
    ...overrides,
  } as unknown as StoredTask;
}

const status = (s: StatusUpdate['status'], extra: Partial<StatusUpdate> = {}): StatusUpdate => ({ jobId: 't1-1', status: s, returncode: 0, jobStderr: '', ...extra });
const progress = (exit1: number) => `start\t0\t${T}\nexit\t0\t${T}\t0\nstart\t1\t${T}\nexit\t1\t${T}\t${exit1}\nend\t${T}\n`;
const manifest = Buffer.from('5\tout/r.txt\0').toString('base64');

describe('settling a task from an AMQP status update and its job reports', () => {
  it('ends COMPLETE with per-executor logs from the reports when every output arrived', async () => {
    const t = task({ report_progress: progress(0), report_files: manifest, report_tail_1_stdout: 'two\n' });
    t.logs[0].outputs = [{ url: 'http://files.example.org/r.txt', path: '/out/r.txt', size_bytes: '5' }];
    const updates = await settle(buildExecutionPlan(t), t, status('complete'), 'job t1-1');
    expect(updates.at(-1)).toEqual({ kind: 'finished', state: 'COMPLETE' });
    expect(updates).toContainEqual({ kind: 'executor-finished', index: 1, endTime: T, exitCode: 0, stdout: 'two\n', stderr: '' });
  });

  it('ends SYSTEM_ERROR naming an output that did not arrive, and EXECUTOR_ERROR (with a note) when an executor failed', async () => {
    const missing = task({ report_progress: progress(0), report_files: manifest });
    expect((await settle(buildExecutionPlan(missing), missing, status('complete'), 'job t1-1')).at(-1)).toEqual({
      kind: 'finished',
      state: 'SYSTEM_ERROR',
      reason: 'job t1-1: outputs[0]: /out/r.txt did not arrive at http://files.example.org/r.txt (the runner could not post it)',
    });
    const failed = task({ report_progress: progress(3), report_files: manifest });
    const updates = await settle(buildExecutionPlan(failed), failed, status('complete'), 'job t1-1');
    expect(updates.at(-1)).toEqual({ kind: 'finished', state: 'EXECUTOR_ERROR' });
    expect(updates).toContainEqual({ kind: 'system-log', message: expect.stringMatching(/^outputs after the executor error: outputs\[0\]/) });
  });

  it('ends SYSTEM_ERROR with the reason for failed, lost, a missing progress file and a script cut short', async () => {
    const t = task({});
    const reason = async (u: StatusUpdate, ref: Record<string, string> = {}) => {
      const x = task(ref);
      return ((await settle(buildExecutionPlan(x), x, u, 'job t1-1')).at(-1) as { reason?: string }).reason;
    };
    expect(await reason(status('failed', { returncode: 1, jobStderr: 'stage-in failed: GET answered 404\n' }))).toBe('job t1-1: the runner reports it failed (returncode 1); its stderr: stage-in failed: GET answered 404');
    expect(await reason(status('lost'))).toMatch(/is lost/);
    expect(await reason(status('complete'))).toMatch(/progress file did not reach tesp/);
    expect(await reason(status('complete'), { report_progress: `start\t0\t${T}\n` })).toMatch(/did not run to its end/);
    expect(await reason(status('failed'), { report_staging_result: JSON.stringify({ stage_in_error: 'no such bucket' }) })).toBe('job t1-1: staging the inputs failed: no such bucket');
    expect(await settle(buildExecutionPlan(t), t, status('running'), 'job t1-1')).toEqual([{ kind: 'running' }]);
    expect(await settle(buildExecutionPlan(t), t, status('queued'), 'job t1-1')).toEqual([]);
  });

  it('leaves a cancel to the cancel path, and names a cancel on the runner', async () => {
    const canceling = task({}, { state: TesState.CANCELING });
    expect(await settle(buildExecutionPlan(canceling), canceling, status('cancelled'), 'job t1-1')).toEqual([]);
    const running = task({});
    expect(await settle(buildExecutionPlan(running), running, status('cancelled'), 'job t1-1')).toEqual([{ kind: 'finished', state: 'SYSTEM_ERROR', reason: 'job t1-1 was cancelled on the runner, not through tesp' }]);
  });

  it('reads the task and attempt from a job id of tesp, and nothing from other ids', async () => {
    expect(jobTask('5f0c-aa-1')).toEqual({ taskId: '5f0c-aa', attempt: 1 });
    expect(jobTask('5f0c-aa-1-rm')).toBeUndefined();
    expect(jobTask('plain')).toBeUndefined();
  });
});

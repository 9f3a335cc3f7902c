import { TesState } from '../../domain/tes-task';
import {
  claimUpdate,
  decodeKey,
  decodePageToken,
  encodeKey,
  encodePageToken,
  listFilter,
  patchUpdate,
  prefixPattern,
  toDocument,
  toStoredTask,
} from './mongo-task-mapping';

describe('MongoDB mapping of the task store', () => {
  it('round-trips a task through its document, whatever its tag keys and metadata keys hold', () => {
    const task = {
      id: 't1',
      state: TesState.QUEUED,
      name: 'n',
      creation_time: '2026-01-01T00:00:00Z',
      executors: [{ image: 'alpine', command: ['true'] }],
      tags: { 'a.b': '1', $x: '2', '': 'empty key' },
      logs: [{ logs: [{ exit_code: 0, stdout: 'x\u0000' }], outputs: [{ url: 'u', path: 'p', size_bytes: '3' }], system_logs: ['s'], metadata: { 'sha256:/out/a.txt': 'h', '$weird%': 'w' } }],
    };
    const doc = toDocument(task, 'alice');
    expect(doc.tag_keys).toEqual(['a.b', '$x', '']);
    expect(doc.logs[0].metadata).toEqual({ 'sha256:/out/a%2Etxt': 'h', '%24weird%25': 'w' });
    expect(toStoredTask(doc)).toEqual({ ...task, control: { owner: 'alice', attempt: 0, update_seq: 0 } });
  });

  it('escapes metadata keys reversibly', () => {
    for (const key of ['', '.', '$', '%', '%2E', 'a.b.c', '$set', 'x%24y']) {
      expect(encodeKey(key)).not.toMatch(/\.|^\$/);
      expect(decodeKey(encodeKey(key))).toBe(key);
    }
  });

  it('filters lists with an anchored, escaped name prefix and tags by key or by key and value', () => {
    expect(listFilter({ all: true }, { namePrefix: 'a.*(b', state: TesState.RUNNING, tags: [{ key: 'k' }, { key: 'p', value: 'v' }, { key: 'k', value: '' }] }, 'ID')).toEqual({
      _id: { $lt: 'ID' },
      state: TesState.RUNNING,
      name: { $regex: '^a\\.\\*\\(b' },
      tag_keys: { $all: ['k'] },
      tag_pairs: { $all: ['["p","v"]'] },
    });
    const re = new RegExp(prefixPattern('x+y?[z]^$\\/-'));
    expect(re.test('x+y?[z]^$\\/-tail')).toBe(true);
    expect(re.test('xxy')).toBe(false);
  });

  it('claims the oldest QUEUED task not skipped as attempt 1 under the new lease', () => {
    expect(claimUpdate('h', 9, 'tok', 'now', ['a'])).toEqual({
      filter: { state: TesState.QUEUED, task_id: { $nin: ['a'] } },
      update: { $set: { state: TesState.INITIALIZING, 'control.attempt': 1, 'control.update_seq': 0, 'control.lease': { holder: 'h', until: 9, token: 'tok' }, 'logs.0.start_time': 'now' } },
    });
  });

  it('turns a run update into one guarded update of dotted paths', () => {
    const update = patchUpdate('t1', {
      from: [TesState.INITIALIZING, TesState.RUNNING],
      to: TesState.COMPLETE,
      attempt: 2,
      seq: 7,
      lease_token: 'tok',
      ops: [
        { op: 'set_executor_log', index: 1, fields: { exit_code: 0, end_time: 'e' } },
        { op: 'add_system_log', line: 'done' },
        { op: 'add_outputs', outputs: [{ url: 'u', path: 'p', size_bytes: '1' }] },
        { op: 'merge_metadata', values: { 'sha256:/a.txt': 'h' } },
        { op: 'set_times', end_time: 'e' },
      ],
    });
    expect(update).toEqual({
      filter: { task_id: 't1', state: { $in: [TesState.INITIALIZING, TesState.RUNNING] }, 'control.attempt': 2, 'control.lease.token': 'tok', 'control.update_seq': { $lt: 7 } },
      update: {
        $set: {
          'logs.1.executors.1.exit_code': 0,
          'logs.1.executors.1.end_time': 'e',
          'logs.1.metadata.sha256:/a%2Etxt': 'h',
          'logs.1.end_time': 'e',
          'control.update_seq': 7,
          state: TesState.COMPLETE,
        },
        $unset: { 'control.lease': '' },
        $addToSet: { 'logs.1.system_logs': { $each: ['done'] }, 'logs.1.outputs': { $each: [{ url: 'u', path: 'p', size_bytes: '1' }] } },
      },
    });
  });

  it('opens the next attempt beside the current log, and refuses transitions the state machine forbids', () => {
    const next = patchUpdate('t1', { from: [TesState.RUNNING], to: TesState.INITIALIZING, attempt: 1, ops: [], next_attempt: { log: { logs: [], outputs: [], system_logs: ['again'] } } });
    expect(next!.update.$set).toMatchObject({ 'control.attempt': 2, 'control.update_seq': 0, 'logs.1': { system_logs: ['again'], outputs: [], executors: {} } });
    expect(next!.update.$unset).toEqual({ 'control.backend_ref': '' });
    expect(patchUpdate('t1', { from: [TesState.COMPLETE], to: TesState.RUNNING, attempt: 1, ops: [] })).toBeUndefined();
  });

  it('accepts only page tokens in the form it issues', () => {
    const token = encodePageToken('0123456789abcdef01234567');
    expect(decodePageToken(token)).toBe('0123456789abcdef01234567');
    for (const bad of ['', 'x', `${token}=`, encodePageToken('ZZ'), Buffer.from('{"after":1}').toString('base64url')]) {
      expect(() => decodePageToken(bad)).toThrow(/^page_token: /);
    }
  });
});

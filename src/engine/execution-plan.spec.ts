import { buildExecutionPlan, hostPath, staticPrefix } from './execution-plan';
import { TaskRecord, TesState } from '../domain/tes-task';

const base: TaskRecord = { id: 'plan-1', state: TesState.INITIALIZING, creation_time: '2026-01-01T00:00:00Z', logs: [], executors: [] };

describe('buildExecutionPlan', () => {
  it('holds container paths only, and mounts writable parents once', () => {
    const plan = buildExecutionPlan({
      ...base,
      volumes: ['/shared'],
      inputs: [{ path: '/work/.command.sh', content: 'echo', type: 'FILE' }],
      outputs: [
        { path: '/work/.command.out', url: '/host/out', type: 'FILE' },
        { path: '/work/results', url: '/host/results', type: 'DIRECTORY' },
        { path: '/shared/sub/*.txt', path_prefix: '/shared', url: '/host/glob', type: 'FILE' },
      ],
      executors: [{ image: 'alpine', command: ['sh'], stdout: '/logs/out.txt', stdin: '/work/.command.sh' }],
    });
    expect(plan.mounts).toEqual([
      { path: '/logs', readOnly: false, type: 'DIRECTORY' },
      { path: '/shared', readOnly: false, type: 'DIRECTORY' },
      { path: '/work', readOnly: false, type: 'DIRECTORY' },
      { path: '/work/.command.sh', readOnly: true, type: 'FILE' },
    ]);
    expect(plan.outputs[2]).toEqual({ index: 2, url: '/host/glob', type: 'FILE', path: '/shared/sub/*.txt', glob: { prefix: '/shared' } });
    expect(plan.executors[0]).toEqual({ index: 0, image: 'alpine', command: ['sh'], env: {}, stdout: '/logs/out.txt', stdin: '/work/.command.sh', ignoreError: false });
    // Nothing in a plan names a host path: whoever runs it decides where the task root is.
    expect(JSON.stringify(plan)).not.toMatch(/\/root\b|data\/work/);
  });

  it('mounts the parent of a stdin file no input provides, and folds nested writable directories into one', () => {
    const plan = buildExecutionPlan({
      ...base,
      volumes: ['/data', '/data/nested/'],
      outputs: [{ path: '/data/deep/result/', url: '/host/r', type: 'DIRECTORY' }],
      executors: [
        { image: 'alpine', command: ['sh'], stdout: '/data/out.txt' },
        { image: 'alpine', command: ['sh'], stdin: '/tmp/made/by-first.txt', ignore_error: true },
      ],
    });
    expect(plan.mounts.map((m) => [m.path, m.readOnly])).toEqual([
      ['/data', false],
      ['/tmp/made', false],
    ]);
    expect(plan.outputs[0]).toMatchObject({ path: '/data/deep/result' });
    expect(plan.executors.map((e) => e.ignoreError)).toEqual([false, true]);
  });

  it('leaves limits unset without resources and ignores an unusable shm_size_gb', () => {
    expect(buildExecutionPlan(base).limits).toEqual({ cpuCores: undefined, ramBytes: undefined, shmBytes: undefined });
    const plan = buildExecutionPlan({ ...base, resources: { backend_parameters: { shm_size_gb: 'lots' } } });
    expect(plan.limits.shmBytes).toBeUndefined();
  });

  it('turns resources into limits', () => {
    const plan = buildExecutionPlan({ ...base, resources: { cpu_cores: 2, ram_gb: 1.5, backend_parameters: { shm_size_gb: '0.5' } } });
    expect(plan.limits).toEqual({ cpuCores: 2, ramBytes: 1.5 * 1024 ** 3, shmBytes: 0.5 * 1024 ** 3 });
  });

  it('resolves container paths under a task root, never above it', () => {
    expect(hostPath('/data/work/t1/root', '/data/file1')).toBe('/data/work/t1/root/data/file1');
    expect(() => hostPath('/root', '../etc')).toThrow(/absolute/);
    // Normalising an absolute path cannot climb above '/', so the result stays under the root.
    expect(hostPath('/root', '/a/../../etc')).toBe('/root/etc');
  });

  it('finds the directory before the first wildcard', () => {
    expect(staticPrefix('/a/b/*.txt')).toBe('/a/b');
    expect(staticPrefix('/a/*/c/*.txt')).toBe('/a');
    expect(staticPrefix('/*.txt')).toBe('/');
  });
});

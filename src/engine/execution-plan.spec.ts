import { buildExecutionPlan, hostPathFor, staticPrefix } from './execution-plan';
import { TaskRecord, TesState } from '../domain/tes-task';

const base: TaskRecord = { id: 'plan-1', state: TesState.INITIALIZING, creation_time: '2026-01-01T00:00:00Z', logs: [], executors: [] };

describe('buildExecutionPlan', () => {
  it('maps container paths under the task root and mounts writable parents once', () => {
    const plan = buildExecutionPlan(
      {
        ...base,
        volumes: ['/shared'],
        inputs: [{ path: '/work/.command.sh', content: 'echo', type: 'FILE' }],
        outputs: [
          { path: '/work/.command.out', url: '/host/out', type: 'FILE' },
          { path: '/work/results', url: '/host/results', type: 'DIRECTORY' },
          { path: '/shared/sub/*.txt', path_prefix: '/shared', url: '/host/glob', type: 'FILE' },
        ],
        executors: [{ image: 'alpine', command: ['sh'], stdout: '/logs/out.txt', stdin: '/work/.command.sh' }],
      },
      '/data/work/plan-1',
    );
    expect(plan.rootDir).toBe('/data/work/plan-1/root');
    expect(plan.mounts).toEqual([
      { hostPath: '/data/work/plan-1/root/logs', containerPath: '/logs', readOnly: false, type: 'DIRECTORY' },
      { hostPath: '/data/work/plan-1/root/shared', containerPath: '/shared', readOnly: false, type: 'DIRECTORY' },
      { hostPath: '/data/work/plan-1/root/work', containerPath: '/work', readOnly: false, type: 'DIRECTORY' },
      { hostPath: '/data/work/plan-1/root/work/.command.sh', containerPath: '/work/.command.sh', readOnly: true, type: 'FILE' },
    ]);
    expect(plan.outputs[2].glob).toEqual({
      hostPattern: '/data/work/plan-1/root/shared/sub/*.txt',
      hostPrefix: '/data/work/plan-1/root/shared',
      containerPrefix: '/shared',
    });
    expect(plan.executors[0]).toMatchObject({ stdoutHostPath: '/data/work/plan-1/root/logs/out.txt', stdinHostPath: '/data/work/plan-1/root/work/.command.sh' });
  });

  it('mounts the parent of a stdin file no input provides, and folds nested writable directories into one', () => {
    const plan = buildExecutionPlan(
      {
        ...base,
        volumes: ['/data', '/data/nested/'],
        outputs: [{ path: '/data/deep/result/', url: '/host/r', type: 'DIRECTORY' }],
        executors: [
          { image: 'alpine', command: ['sh'], stdout: '/data/out.txt' },
          { image: 'alpine', command: ['sh'], stdin: '/tmp/made/by-first.txt', ignore_error: true },
        ],
      },
      '/t',
    );
    expect(plan.mounts.map((m) => [m.containerPath, m.readOnly])).toEqual([
      ['/data', false],
      ['/tmp/made', false],
    ]);
    expect(plan.outputs[0]).toMatchObject({ containerPath: '/data/deep/result', hostPath: '/t/root/data/deep/result' });
    expect(plan.executors.map((e) => e.ignoreError)).toEqual([false, true]);
    expect(plan.executors[1].stdinHostPath).toBe('/t/root/tmp/made/by-first.txt');
  });

  it('leaves limits unset without resources and ignores an unusable shm_size_gb', () => {
    expect(buildExecutionPlan(base, '/t').limits).toEqual({ cpuCores: undefined, ramBytes: undefined, shmBytes: undefined });
    const plan = buildExecutionPlan({ ...base, resources: { backend_parameters: { shm_size_gb: 'lots' } } }, '/t');
    expect(plan.limits.shmBytes).toBeUndefined();
  });

  it('turns resources into limits', () => {
    const plan = buildExecutionPlan({ ...base, resources: { cpu_cores: 2, ram_gb: 1.5, backend_parameters: { shm_size_gb: '0.5' } } }, '/t');
    expect(plan.limits).toEqual({ cpuCores: 2, ramBytes: 1.5 * 1024 ** 3, shmBytes: 0.5 * 1024 ** 3 });
  });

  it('refuses paths that would leave the task root', () => {
    expect(() => hostPathFor('/root', '../etc')).toThrow(/absolute/);
    // Normalising an absolute path cannot climb above '/', so the result stays under the root.
    expect(hostPathFor('/root', '/a/../../etc')).toBe('/root/etc');
  });

  it('finds the directory before the first wildcard', () => {
    expect(staticPrefix('/a/b/*.txt')).toBe('/a/b');
    expect(staticPrefix('/a/*/c/*.txt')).toBe('/a');
    expect(staticPrefix('/*.txt')).toBe('/');
  });
});

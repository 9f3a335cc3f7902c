import { dockerOptions, executorUser, isRootUser } from './docker-options';
import { buildExecutionPlan, taskLayout } from './execution-plan';
import { TesState } from '../domain/tes-task';

describe('dockerOptions', () => {
  const layout = taskLayout('/data/work/t-9');

  it('maps a plan to docker create options: name, labels, mounts under the task root, limits, no network', () => {
    const plan = buildExecutionPlan({
      id: 't-9',
      state: TesState.INITIALIZING,
      creation_time: '2026-01-01T00:00:00Z',
      logs: [],
      inputs: [{ path: '/in/a.txt', content: 'x', type: 'FILE' }],
      outputs: [{ path: '/out/b.txt', url: '/host/b.txt', type: 'FILE' }],
      resources: { cpu_cores: 2, ram_gb: 0.5, backend_parameters: { shm_size_gb: '1' } },
      executors: [
        { image: 'alpine:latest', command: ['cat'], stdin: '/in/a.txt', workdir: '/out', env: { A: '1', B: 'two words' } },
        { image: 'ubuntu:20.04', command: ['true'] },
      ],
    });
    expect(dockerOptions(plan, plan.executors[0], layout, { allowNetwork: false })).toEqual({
      name: 'tesp-t-9-0',
      Image: 'alpine:latest',
      Cmd: ['cat'],
      WorkingDir: '/out',
      Env: ['A=1', 'B=two words'],
      Labels: { 'tesp.task': 't-9', 'tesp.executor': '0' },
      Tty: false,
      AttachStdin: true,
      OpenStdin: true,
      StdinOnce: true,
      AttachStdout: true,
      AttachStderr: true,
      HostConfig: {
        Binds: ['/data/work/t-9/root/out:/out', '/data/work/t-9/root/in/a.txt:/in/a.txt:ro'],
        NetworkMode: 'none',
        NanoCpus: 2e9,
        Memory: 512 * 1024 ** 2,
        MemorySwap: 512 * 1024 ** 2,
        ShmSize: 1024 ** 3,
        SecurityOpt: ['no-new-privileges'],
        AutoRemove: false,
      },
    });
    const second = dockerOptions(plan, plan.executors[1], layout, { allowNetwork: true });
    expect(second).toMatchObject({ name: 'tesp-t-9-1', Image: 'ubuntu:20.04', AttachStdin: false, OpenStdin: false, HostConfig: { NetworkMode: 'default' } });
    expect(second.WorkingDir).toBeUndefined();
  });

  it('sets no limits the task does not ask for', () => {
    const plan = buildExecutionPlan({ id: 't', state: TesState.INITIALIZING, creation_time: '', logs: [], executors: [{ image: 'alpine', command: ['true'] }] });
    const { HostConfig } = dockerOptions(plan, plan.executors[0], layout, { allowNetwork: false });
    expect(HostConfig).toMatchObject({ Binds: [], NanoCpus: undefined, Memory: undefined, ShmSize: undefined });
  });

  it('runs a non-root executor with every capability dropped and no new privileges', () => {
    const plan = buildExecutionPlan({ id: 't', state: TesState.INITIALIZING, creation_time: '', logs: [], executors: [{ image: 'alpine', command: ['true'] }] });
    const options = dockerOptions(plan, plan.executors[0], layout, { allowNetwork: false, user: '65534:65534' });
    expect(options.User).toBe('65534:65534');
    expect(options.HostConfig).toMatchObject({ CapDrop: ['ALL'], SecurityOpt: ['no-new-privileges'] });
    const root = dockerOptions(plan, plan.executors[0], layout, { allowNetwork: false });
    expect(root.User).toBeUndefined();
    expect(root.HostConfig?.CapDrop).toBeUndefined();
    expect(root.HostConfig?.SecurityOpt).toEqual(['no-new-privileges']);
  });

  it("picks the image's own non-root user, else the configured one, else tesp's own ids or nobody", () => {
    for (const rootish of [undefined, '', '0', 'root', '0:0', 'root:wheel', ' 0 ']) expect(isRootUser(rootish)).toBe(true);
    expect(executorUser('app', '', { uid: 0, gid: 0 })).toBe('app');
    expect(executorUser('1000:1000', '2000', { uid: 0, gid: 0 })).toBe('1000:1000');
    expect(executorUser('root', '2000:2000', { uid: 0, gid: 0 })).toBe('2000:2000');
    expect(executorUser('', '', { uid: 0, gid: 0 })).toBe('65534:65534');
    expect(executorUser(undefined, '', { uid: 1001, gid: 1002 })).toBe('1001:1002');
    expect(executorUser(undefined, '', undefined)).toBe('65534:65534');
  });
});

// `tesp runner` with compute.local.runtime = slurm: the API dispatches over Pulsar's REST API, the runner submits
// each job to the real one-node Slurm of docker/start-slurm.sh and follows it there.
import { execFileSync } from 'node:child_process';
import { describeWhen, SLURM_MISSING, slurmAvailable } from '../support/service-check';
import { ServiceProcess, sleep } from '../e2e/service-process';
import { RunnerProcess } from './runner-process';

const activeSlurmJobs = (name: string) =>
  execFileSync('squeue', ['-h', '--name', name, '-o', '%T'], { encoding: 'utf8' }).split('\n').filter((state) => /RUNNING|PENDING|COMPLETING/.test(state));

describeWhen('tesp runner on Slurm', slurmAvailable(), SLURM_MISSING, () => {
  let runner: RunnerProcess;
  let api: ServiceProcess;

  beforeAll(async () => {
    runner = new RunnerProcess(RunnerProcess.tempDataDir(), {
      TESP_COMPUTE__LOCAL__RUNTIME: 'slurm',
      TESP_COMPUTE__SLURM__CONTAINERS: 'process',
      TESP_COMPUTE__SLURM__POLL_INTERVAL_MS: '300',
    });
    await runner.start();
    api = new ServiceProcess(ServiceProcess.tempDataDir(), {
      TESP_COMPUTE__BACKEND: 'pulsar',
      TESP_COMPUTE__PULSAR__RUNNERS: JSON.stringify([runner.entry('hpc')]),
      TESP_COMPUTE__PULSAR__POLL_INTERVAL_MS: '200',
      TESP_COMPUTE__PULSAR__HEALTH_INTERVAL_MS: '500',
      TESP_COMPUTE__PULSAR__LOG_REFRESH_MS: '300',
    });
    await api.start();
  });

  afterAll(async () => {
    await api?.stop();
    await runner?.stop();
    api?.cleanup();
    runner?.cleanup();
  });

  it('says in service-info that its runner schedules on Slurm, with the containers it renders for', async () => {
    const deadline = Date.now() + 10_000;
    let shown = '';
    while (!shown.includes('"scheduler"') && Date.now() < deadline) {
      shown = JSON.stringify((await api.get('/service-info')).json);
      if (!shown.includes('"scheduler"')) await sleep(100);
    }
    expect(shown).toContain('"runtime":"process","scheduler":"slurm"');
  });

  it('runs three executors as one Slurm job, each with its own logs', async () => {
    const id = await api.createTask({
      inputs: [{ path: '/in/note', content: 'from content\n' }],
      executors: [
        { image: 'alpine', command: ['sh', '-c', 'cat "$TESP_TASK_ROOT/in/note"'] },
        { image: 'alpine', command: ['sh', '-c', 'echo two >&2'] },
        { image: 'alpine', command: ['sh', '-c', 'echo three'] },
      ],
    });
    const task = await api.waitFor(id, undefined, 90_000);
    expect(task.state).toBe('COMPLETE');
    expect(task.logs[0].logs.map((l: any) => [l.stdout, l.stderr, l.exit_code])).toEqual([
      ['from content\n', '', 0],
      ['', 'two\n', 0],
      ['three\n', '', 0],
    ]);
    const accounted = execFileSync('squeue', ['-h', '-t', 'all', '--name', `tesp-runner-${id}-1`, '-o', '%T'], { encoding: 'utf8' }).trim();
    expect(accounted).toBe('COMPLETED');
  });

  it('finds its Slurm job again after a SIGKILL and ends the task right', async () => {
    const id = await api.createTask({ executors: [{ image: 'alpine', command: ['sh', '-c', 'echo before; sleep 4; echo after'] }, { image: 'alpine', command: ['echo', 'second'] }] });
    await api.waitForExecutor(id, 0, 60_000);
    await runner.stop('SIGKILL');
    await runner.start();
    const task = await api.waitFor(id, undefined, 90_000);
    expect(task.state).toBe('COMPLETE');
    expect(task.logs[0].logs.map((l: any) => l.stdout)).toEqual(['before\nafter\n', 'second\n']);
  }, 120_000);

  it('cancels a running task: CANCELED, and its Slurm job is gone', async () => {
    const id = await api.createTask({ executors: [{ image: 'alpine', command: ['sh', '-c', 'echo up; sleep 600'] }] });
    await api.waitForExecutor(id, 0, 60_000);
    expect(activeSlurmJobs(`tesp-runner-${id}-1`)).toEqual(['RUNNING']);
    expect((await api.post(`/tasks/${id}:cancel`, {})).status).toBe(200);
    const task = await api.waitFor(id, ['CANCELED'], 90_000);
    expect(task.state).toBe('CANCELED');
    expect(activeSlurmJobs(`tesp-runner-${id}-1`)).toEqual([]);
  }, 120_000);
});

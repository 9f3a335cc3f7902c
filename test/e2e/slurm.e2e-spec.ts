// The built service with compute.local.runtime = slurm, against the real one-node Slurm of docker/start-slurm.sh:
// tasks become Slurm jobs, their states are read in rounds, and tesp survives a SIGKILL while its jobs run.
import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describeWhen, SLURM_MISSING, slurmAvailable } from '../support/service-check';
import { containersOf, dockerAvailable, ServiceProcess, sleep } from './service-process';

const SLURM = slurmAvailable();

/** A directory first on PATH whose squeue and sacct note each call (with its arguments) before running the real one. */
function countingSlurmCommands(): { dir: string; calls: () => string[][] } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tesp-slurm-bin-'));
  const log = path.join(dir, 'calls');
  for (const command of ['squeue', 'sacct']) {
    const real = execFileSync('bash', ['-c', `command -v ${command}`], { encoding: 'utf8' }).trim();
    const file = path.join(dir, command);
    writeFileSync(file, `#!/bin/bash\nprintf '%s\\t%s\\n' ${command} "$*" >>${log}\nexec ${real} "$@"\n`);
    chmodSync(file, 0o755);
  }
  const calls = () => {
    const text = (() => {
      try {
        return readFileSync(log, 'utf8');
      } catch {
        return '';
      }
    })();
    return text.split('\n').filter(Boolean).map((line) => line.split('\t'));
  };
  return { dir, calls };
}

/** Job ids a call asked about (its -j list). */
function idsAsked(args: string): number {
  const match = /-j (\S+)/.exec(args);
  return match ? match[1].split(',').length : 0;
}

function slurmJobsNamed(name: string): string[] {
  return execFileSync('squeue', ['-h', '--name', name, '-o', '%i %T'], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

/**
 * Points a task of a stopped tesp at another Slurm job: in its stored backend reference and in its job-id file, as
 * if tesp had submitted that job.
 */
function pointAtJob(dataDir: string, taskId: string, jobId: string): void {
  const db = new Database(path.join(dataDir, 'tesp.sqlite'));
  try {
    const changed = db.prepare("UPDATE tasks SET backend_ref = json_set(backend_ref, '$.job_id', ?) WHERE id = ?").run(jobId, taskId).changes;
    if (changed !== 1) throw new Error(`task ${taskId} is not in the store`);
  } finally {
    db.close();
  }
  writeFileSync(path.join(dataDir, 'slurm', taskId, 'slurm', 'job-id'), `${jobId}\n`);
}

function storedJobId(dataDir: string, taskId: string): unknown {
  const db = new Database(path.join(dataDir, 'tesp.sqlite'), { readonly: true });
  try {
    const row = db.prepare('SELECT backend_ref FROM tasks WHERE id = ?').get(taskId) as { backend_ref: string };
    return JSON.parse(row.backend_ref).job_id;
  } finally {
    db.close();
  }
}

const executor = (script: string) => ({ image: 'alpine', command: ['sh', '-c', script] });

function slurmService(dataDir: string, extra: Record<string, string> = {}): ServiceProcess {
  return new ServiceProcess(dataDir, {
    TESP_COMPUTE__LOCAL__RUNTIME: 'slurm',
    TESP_COMPUTE__SLURM__CONTAINERS: 'process',
    TESP_COMPUTE__SLURM__POLL_INTERVAL_MS: '300',
    ...extra,
  });
}

describeWhen('tasks as Slurm jobs (compute.local.runtime = slurm)', SLURM, SLURM_MISSING, () => {
  let service: ServiceProcess;
  let counting: ReturnType<typeof countingSlurmCommands>;

  beforeAll(async () => {
    counting = countingSlurmCommands();
    service = slurmService(ServiceProcess.tempDataDir(), {
      PATH: `${counting.dir}:${process.env.PATH ?? '/usr/bin:/bin'}`,
      TESP_COMPUTE__LOCAL__MAX_CONCURRENT_TASKS: '100',
    });
    await service.start();
  });

  afterAll(async () => {
    await service?.stop();
    service?.cleanup();
    rmSync(counting.dir, { recursive: true, force: true });
  });

  it('lists its backend parameters in service-info', async () => {
    const info = (await service.get('/service-info')).json;
    expect(info.tesResources_backend_parameters).toEqual(expect.arrayContaining(['max_time', 'walltime', 'partition', 'account']));
  });

  it('runs three executors in one job, each with its own logs, and records the Slurm job id', async () => {
    const id = await service.createTask({
      executors: [executor('echo one; echo uno >&2'), executor('echo two'), executor('echo three; echo tres >&2')],
      resources: { cpu_cores: 1, ram_gb: 0.1 },
    });
    const task = await service.waitFor(id);
    expect(task.state).toBe('COMPLETE');
    const logs = task.logs[0].logs;
    expect(logs.map((l: any) => [l.stdout, l.stderr, l.exit_code])).toEqual([
      ['one\n', 'uno\n', 0],
      ['two\n', '', 0],
      ['three\n', 'tres\n', 0],
    ]);
    const jobId = task.logs[0].metadata.slurm_job_id;
    expect(jobId).toMatch(/^\d+$/);
    // squeue lists an ended job for MinJobAge (accounting may lag behind).
    expect(execFileSync('squeue', ['-h', '-t', 'all', '-j', jobId, '-o', '%j %T'], { encoding: 'utf8' }).trim()).toBe(`tesp-${id}-1 COMPLETED`);
  });

  it('ends EXECUTOR_ERROR when an executor fails, and runs none after it', async () => {
    const id = await service.createTask({ executors: [executor('echo fine'), executor('echo broken >&2; exit 3'), executor('echo never')] });
    const task = await service.waitFor(id);
    expect(task.state).toBe('EXECUTOR_ERROR');
    const logs = task.logs[0].logs;
    expect(logs.map((l: any) => l.exit_code)).toEqual([0, 3]);
    expect(logs[1].stderr).toBe('broken\n');
  });

  it('ends a task over its time limit (max_time) with the reason', async () => {
    const id = await service.createTask({ executors: [executor('echo started; sleep 600')], resources: { backend_parameters: { max_time: '1' } } });
    // Slurm checks time limits about every 30 s after the one minute.
    const task = await service.waitFor(id, undefined, 170_000);
    expect(task.state).toBe('EXECUTOR_ERROR');
    expect(task.logs[0].logs[0].stdout).toBe('started\n');
    expect(task.logs[0].system_logs.join('\n')).toMatch(/time limit \(TIMEOUT, --time=1\)/);
  }, 180_000);

  it('refuses a time limit Slurm would not take', async () => {
    const { status, json } = await service.post('/tasks', { executors: [executor('true')], resources: { backend_parameters: { max_time: 'soon' }, backend_parameters_strict: true } });
    expect(status).toBe(400);
    expect(JSON.stringify(json)).toContain('max_time');
  });

  it('ends SYSTEM_ERROR with what sbatch said when Slurm refuses the job', async () => {
    const id = await service.createTask({ executors: [executor('true')], resources: { backend_parameters: { partition: 'no-such-partition' } } });
    const task = await service.waitFor(id);
    expect(task.state).toBe('SYSTEM_ERROR');
    expect(task.logs[0].system_logs.join('\n')).toMatch(/sbatch failed \(exit 1\): .*invalid partition specified: no-such-partition/);
  });

  it('runs 50 tasks at once to COMPLETE, reading their states in batches', async () => {
    const before = counting.calls().length;
    const ids = await Promise.all(Array.from({ length: 50 }, (_, i) => service.createTask({ executors: [executor(`echo task ${i}`)] })));
    const tasks = await Promise.all(ids.map((id) => service.waitFor(id, undefined, 240_000)));
    expect(tasks.map((t) => t.state)).toEqual(ids.map(() => 'COMPLETE'));
    expect(tasks.map((t) => t.logs[0].logs[0].stdout)).toEqual(ids.map((_, i) => `task ${i}\n`));
    const calls = counting.calls().slice(before);
    const jobPolls = calls.reduce((sum, [, args]) => sum + idsAsked(args), 0);
    // One call per task per poll would make as many calls as job polls; in batches each call asks for many jobs.
    expect(calls.length).toBeGreaterThan(0);
    expect(calls.length * 5).toBeLessThan(jobPolls);
    expect(Math.max(...calls.map(([, args]) => idsAsked(args)))).toBeGreaterThanOrEqual(10);
  }, 300_000);
});

describeWhen('a Slurm task across a SIGKILL of tesp', SLURM, SLURM_MISSING, () => {
  let service: ServiceProcess;

  beforeEach(async () => {
    service = slurmService(ServiceProcess.tempDataDir(), { TESP_COMPUTE__SLURM__LAUNCH_TIMEOUT_S: '5' });
    await service.start();
  });

  afterEach(async () => {
    await service.stop('SIGKILL');
    service.cleanup();
  });

  it('ends right when tesp is killed and started again while its job runs', async () => {
    const id = await service.createTask({ executors: [executor('echo before; sleep 4; echo after'), executor('echo second')] });
    const started = await service.waitForExecutor(id, 0);
    await service.stop('SIGKILL');
    // The job id is the task's backend reference.
    expect(storedJobId(service.dataDir, id)).toBe(started.logs[0].metadata.slurm_job_id);
    await service.start();
    const task = await service.waitFor(id, undefined, 90_000);
    expect(task.state).toBe('COMPLETE');
    expect(task.logs.at(-1).logs.map((l: any) => l.stdout)).toEqual(['before\nafter\n', 'second\n']);
  }, 120_000);

  it('ends SYSTEM_ERROR with the reason when Slurm no longer knows its job', async () => {
    const id = await service.createTask({ executors: [executor('sleep 600')] });
    const started = await service.waitForExecutor(id, 0);
    const jobId = started.logs[0].metadata.slurm_job_id;
    await service.stop('SIGKILL');
    execFileSync('scancel', [jobId]);
    // A job id Slurm never gave: as for a job forgotten after MinJobAge with accounting off.
    pointAtJob(service.dataDir, id, '999999999');
    await service.start();
    const task = await service.waitFor(id, undefined, 60_000);
    expect(task.state).toBe('SYSTEM_ERROR');
    expect(task.logs.at(-1).system_logs.join('\n')).toContain('Slurm no longer knows job 999999999');
  }, 90_000);

  it('settles a job that Slurm shows RUNNING but whose script never started', async () => {
    const id = await service.createTask({ executors: [executor('sleep 600')] });
    const started = await service.waitForExecutor(id, 0);
    await service.stop('SIGKILL');
    execFileSync('scancel', [started.logs[0].metadata.slurm_job_id]);
    // A job of the task's name that runs something else stands for one whose launch failed on the node.
    const stray = execFileSync('sbatch', ['--parsable', '-J', `tesp-${id}-1`, '-o', '/dev/null', '--wrap', 'sleep 600'], { encoding: 'utf8' }).trim();
    rmSync(path.join(service.dataDir, 'slurm', id, 'slurm', 'launched'), { force: true });
    pointAtJob(service.dataDir, id, stray);
    try {
      await service.start();
      const task = await service.waitFor(id, undefined, 60_000);
      expect(task.state).toBe('SYSTEM_ERROR');
      expect(task.logs.at(-1).system_logs.join('\n')).toMatch(new RegExp(`Slurm job ${stray} stayed RUNNING .* without its script starting`));
      expect(slurmJobsNamed(`tesp-${id}-1`).filter((line) => /RUNNING|PENDING/.test(line))).toEqual([]);
    } finally {
      execFileSync('scancel', [stray]);
    }
  }, 90_000);
});

describeWhen('cancel of a Slurm task whose executors are Docker containers', SLURM && dockerAvailable(), `${SLURM_MISSING}, and Docker must answer`, () => {
  let service: ServiceProcess;
  let shared: string;

  beforeAll(async () => {
    shared = mkdtempSync(path.join(os.tmpdir(), 'tesp-slurm-files-'));
    service = slurmService(ServiceProcess.tempDataDir(), { TESP_COMPUTE__SLURM__CONTAINERS: 'docker', TESP_STORAGE__FILE__ALLOWED_DIRS: shared });
    await service.start();
  });

  afterAll(async () => {
    await service?.stop();
    service?.cleanup();
    rmSync(shared, { recursive: true, force: true });
  });

  it('runs containers on the node and stages outputs from the shared directory', async () => {
    mkdirSync(path.join(shared, 'out'), { recursive: true });
    const id = await service.createTask({
      inputs: [{ path: '/in/greeting', content: 'hello slurm\n' }],
      outputs: [{ path: '/out/copy', url: path.join(shared, 'out', 'copy'), type: 'FILE' }],
      executors: [{ image: 'alpine', command: ['sh', '-c', 'cat /in/greeting > /out/copy; cat /in/greeting'] }],
    });
    const task = await service.waitFor(id);
    expect(task.state).toBe('COMPLETE');
    expect(task.logs[0].logs[0].stdout).toBe('hello slurm\n');
    expect(readFileSync(path.join(shared, 'out', 'copy'), 'utf8')).toBe('hello slurm\n');
  });

  it('leaves no Slurm job and no container behind', async () => {
    const id = await service.createTask({ executors: [{ image: 'alpine', command: ['sh', '-c', 'echo up; sleep 600'] }] });
    await service.waitForExecutor(id, 0);
    const deadline = Date.now() + 30_000;
    while (containersOf(id).length === 0 && Date.now() < deadline) await sleep(200);
    expect(containersOf(id)).toHaveLength(1);
    expect((await service.post(`/tasks/${id}:cancel`, {})).status).toBe(200);
    const task = await service.waitFor(id, ['CANCELED'], 90_000);
    expect(task.state).toBe('CANCELED');
    expect(task.logs[0].system_logs.join('\n')).toMatch(/Slurm job \d+ was cancelled/);
    expect(slurmJobsNamed(`tesp-${id}-1`).filter((line) => /RUNNING|PENDING|COMPLETING/.test(line))).toEqual([]);
    expect(containersOf(id)).toEqual([]);
  }, 120_000);
});

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MAX_TIME, SLURM_PARTITION } from './backend-parameters';
import { sbatchArguments } from './slurm-client';
import { renderBatchScript, slurmJobFiles, taskSubmission } from './slurm-job';
import { jobPhase } from './slurm-job-watch';

const settings = { partition: 'batch', account: '', sbatchArgs: ['--qos=normal'] };

describe('taskSubmission', () => {
  it('maps cores, RAM and disk to whole units Slurm takes', () => {
    expect(taskSubmission({ cpu_cores: 2, ram_gb: 1.5, disk_gb: 0.25 }, settings)).toEqual(
      expect.objectContaining({ cpusPerTask: 2, memMb: 1536, tmpMb: 256, partition: 'batch', account: undefined, extraArgs: ['--qos=normal'] }),
    );
  });

  it('takes the time limit from max_time, else walltime, and lets backend parameters win over the settings', () => {
    expect(taskSubmission({ backend_parameters: { walltime: '2:00:00' } }, settings).timeLimit).toBe('2:00:00');
    expect(taskSubmission({ backend_parameters: { walltime: '2:00:00', max_time: '30' } }, settings).timeLimit).toBe('30');
    expect(taskSubmission({ backend_parameters: { partition: 'gpu', account: 'lab1' } }, settings)).toEqual(expect.objectContaining({ partition: 'gpu', account: 'lab1' }));
    expect(taskSubmission(undefined, { partition: '', account: '', sbatchArgs: [] })).toEqual({ extraArgs: [] });
  });
});

describe('Slurm backend parameters', () => {
  it('accept the time formats sbatch takes, and nothing else', () => {
    for (const ok of ['1', '90', '10:30', '1:00:00', '2-12', '2-12:30', '2-12:30:15']) expect(MAX_TIME.problem(ok)).toBeUndefined();
    for (const bad of ['', '0', 'soon', '1h', '-1', '1:2:3:4', '1 --uid=0']) expect(MAX_TIME.problem(bad)).toMatch(/Slurm time limit/);
  });

  it('accept partition names, and no sbatch option smuggled in', () => {
    expect(SLURM_PARTITION.problem('gpu-a100')).toBeUndefined();
    expect(SLURM_PARTITION.problem('x --wrap=id')).toMatch(/partition/);
  });
});

describe('sbatchArguments', () => {
  it('puts the settings first, so tesp own options win, and the script last', () => {
    const args = sbatchArguments({ script: '/w/t/slurm/batch.sh', jobName: 'tesp-t-1', cwd: '/w/t/working', output: '/w/t/slurm/output', cpusPerTask: 1, memMb: 100, timeLimit: '5', partition: 'p', extraArgs: ['--job-name=other'] });
    expect(args).toEqual(['--parsable', '--job-name=other', '--job-name=tesp-t-1', '--chdir=/w/t/working', '--output=/w/t/slurm/output', '--nodes=1', '--ntasks=1', '--cpus-per-task=1', '--mem=100M', '--time=5', '--partition=p', '/w/t/slurm/batch.sh']);
  });
});

describe('renderBatchScript', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "tesp-slurm job's-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('marks its start, then runs the job in its place', () => {
    const files = slurmJobFiles(dir);
    execFileSync('mkdir', ['-p', files.dir]);
    writeFileSync(files.batchScript, renderBatchScript(files, 'echo "running as $$"'));
    const out = execFileSync('bash', [files.batchScript], { encoding: 'utf8' });
    expect(out).toMatch(/^running as \d+\n$/);
    expect(readFileSync(files.launched, 'utf8')).toMatch(/^\S+ \d{4}-\d\d-\d\dT/);
  });
});

describe('jobPhase', () => {
  it('sorts Slurm states into waiting, running and ended', () => {
    expect(['PENDING', 'CONFIGURING', 'REQUEUED', 'SUSPENDED'].map(jobPhase)).toEqual(['waiting', 'waiting', 'waiting', 'waiting']);
    expect(['RUNNING', 'COMPLETING'].map(jobPhase)).toEqual(['running', 'running']);
    expect(['COMPLETED', 'FAILED', 'TIMEOUT', 'OUT_OF_MEMORY', 'NODE_FAIL', 'PREEMPTED', 'CANCELLED', 'BOOT_FAIL', 'DEADLINE'].map(jobPhase)).toEqual(Array(9).fill('ended'));
  });
});

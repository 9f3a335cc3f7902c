import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ExecutionPlan, PlanExecutor } from './execution-plan';
import { ADVERSARIAL } from '../../test/support/shell-values';
import { apptainerImage, renderScript, shellQuote } from './job-script';


function bashWords(rendered: string[]): Buffer {
  return execFileSync('bash', ['-c', `printf '%s\\0' ${rendered.join(' ')}`]);
}

describe('shellQuote', () => {
  it('gives bash back every value byte for byte, each as one word', () => {
    expect(bashWords(ADVERSARIAL.map(shellQuote))).toEqual(Buffer.from(ADVERSARIAL.map((v) => `${v}\0`).join('')));
  });

  it('keeps values one word inside bash arrays too', () => {
    const out = execFileSync('bash', ['-c', `a=(${ADVERSARIAL.map(shellQuote).join(' ')}); printf '%s\\0' "\${#a[@]}" "\${a[@]}"`]);
    expect(out).toEqual(Buffer.from([String(ADVERSARIAL.length), ...ADVERSARIAL].map((v) => `${v}\0`).join('')));
  });

  it('refuses a NUL, which no argument can hold', () => {
    expect(() => shellQuote('a\0b')).toThrow(/NUL/);
  });
});

const executor = (overrides: Partial<PlanExecutor> = {}): PlanExecutor => ({ index: 0, image: 'alpine:latest', command: ['sh', '-c', 'true'], env: {}, ignoreError: false, ...overrides });

function plan(executors: PlanExecutor[], overrides: Partial<ExecutionPlan> = {}): ExecutionPlan {
  return {
    taskId: 'task-1',
    mounts: [
      { path: '/out', readOnly: false, type: 'DIRECTORY' },
      { path: '/in/a.txt', readOnly: true, type: 'FILE' },
    ],
    inputs: [{ index: 0, url: 'file:///a', type: 'FILE', path: '/in/a.txt' }],
    outputs: [],
    executors,
    limits: {},
    ...overrides,
  };
}

/** The words of the docker run line in executor_<i>'s definition, as bash sees them ($R left as it is). */
function dockerWords(script: string, position: number): string[] {
  const definition = script.slice(script.indexOf(`executor_${position}() {`));
  const cmdLine = definition.slice(definition.indexOf('  cmd=('), definition.indexOf('\n  stdin_path='));
  const out = execFileSync('bash', ['-c', `R='$R'; ${cmdLine}; printf '%s\\0' "\${cmd[@]}"`]);
  return out.toString('utf8').split('\0').slice(0, -1);
}

describe('renderScript', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tesp-job-script-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const syntaxCheck = (script: string) => {
    const file = path.join(dir, 'job.sh');
    writeFileSync(file, script);
    execFileSync('bash', ['-n', file]);
  };

  it('renders valid bash for both runtimes, whatever the values', () => {
    const nasty = executor({ command: ADVERSARIAL.filter((v) => v !== ''), env: Object.fromEntries(ADVERSARIAL.map((v, i) => [`V${i}`, v])), workdir: "/w o'rk", stdin: '/in/a.txt', stdout: '/out/$(x)', stderr: '/out/`y`' });
    for (const runtime of ['docker', 'apptainer', 'process'] as const) syntaxCheck(renderScript(plan([nasty, executor()]), { jobId: 'job-1', runtime }));
  });

  it('names and labels each container by job and executor, without network by default', () => {
    const script = renderScript(plan([executor(), executor({ index: 1 })]), { jobId: 'job-1', runtime: 'docker' });
    const first = dockerWords(script, 0);
    expect(first.slice(0, 5)).toEqual(['docker', 'run', '--rm', '--name', 'tesp-job-1-0']);
    expect(first).toEqual(expect.arrayContaining(['tesp.job=job-1', 'tesp.task=task-1']));
    expect(first.join(' ')).toContain('--network none');
    expect(dockerWords(script, 1)[4]).toBe('tesp-job-1-1');
    const open = renderScript(plan([executor()]), { jobId: 'job-1', runtime: 'docker', allowNetwork: true });
    expect(dockerWords(open, 0)).not.toContain('--network');
  });

  it('passes -i only to an executor with stdin', () => {
    const script = renderScript(plan([executor({ stdin: '/in/a.txt' }), executor({ index: 1 })]), { jobId: 'j', runtime: 'docker' });
    expect(dockerWords(script, 0)).toContain('-i');
    expect(dockerWords(script, 1)).not.toContain('-i');
  });

  it('mounts inputs read-only and the rest read-write, under the task root', () => {
    const words = dockerWords(renderScript(plan([executor()]), { jobId: 'j', runtime: 'docker' }), 0);
    const volumes = words.flatMap((w, i) => (words[i - 1] === '-v' ? [w] : []));
    expect(volumes).toEqual(['$R/out:/out', '$R/in/a.txt:/in/a.txt:ro']);
  });

  it('maps workdir, env, limits, image and command in that order, the image after --', () => {
    const words = dockerWords(
      renderScript(plan([executor({ workdir: '/w', env: { A: 'x y', B: '' }, command: ['--flag', '*'] })], { limits: { cpuCores: 2, ramBytes: 1024 ** 3, shmBytes: 64 * 1024 ** 2 } }), { jobId: 'j', runtime: 'docker' }),
      0,
    );
    const tail = words.slice(words.indexOf('-w'));
    expect(tail).toEqual(['-w', '/w', '-e', 'A=x y', '-e', 'B=', '-v', '$R/out:/out', '-v', '$R/in/a.txt:/in/a.txt:ro', '--cpus=2', '--memory=1073741824', '--memory-swap=1073741824', '--shm-size=67108864', '--', 'alpine:latest', '--flag', '*']);
  });

  it('runs a process executor in exactly the process runtime environment', () => {
    const script = renderScript(plan([executor({ env: { A: '1' }, command: ['printenv'] })]), { jobId: 'j', runtime: 'process' });
    const definition = script.slice(script.indexOf('executor_0() {'));
    const cmdLine = definition.slice(definition.indexOf('  cmd=('), definition.indexOf('\n  stdin_path='));
    const out = execFileSync('bash', ['-c', `R=/root/of/task; ${cmdLine}; printf '%s\\0' "\${cmd[@]}"`]).toString('utf8').split('\0').slice(0, -1);
    expect(out).toEqual(['env', '-i', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOME=/root/of/task', 'A=1', 'TESP_TASK_ROOT=/root/of/task', 'printenv']);
  });

  it('runs an Apptainer executor from the registry image, with its mounts bound, a clean environment and no network', () => {
    const script = renderScript(plan([executor({ workdir: '/w', env: { A: 'x y' }, command: ['echo', '$HOME'] })]), { jobId: 'j', runtime: 'apptainer', apptainerCommand: 'singularity' });
    expect(dockerWords(script, 0)).toEqual([
      'singularity', 'exec', '--containall', '--cleanenv', '--net', '--network', 'none', '--pwd', '/w', '--env', 'A=x y',
      '--bind', '$R/out:/out', '--bind', '$R/in/a.txt:/in/a.txt:ro', 'docker://alpine:latest', 'echo', '$HOME',
    ]);
    const open = renderScript(plan([executor()]), { jobId: 'j', runtime: 'apptainer', allowNetwork: true });
    expect(dockerWords(open, 0).slice(0, 4)).toEqual(['apptainer', 'exec', '--containall', '--cleanenv']);
    expect(dockerWords(open, 0)).not.toContain('--net');
  });

  it('names Docker images for Apptainer, and keeps what names an image already', () => {
    expect(apptainerImage('ubuntu:20.04')).toBe('docker://ubuntu:20.04');
    expect(apptainerImage('quay.io/biocontainers/samtools:1.17--h00cdaf9_0')).toBe('docker://quay.io/biocontainers/samtools:1.17--h00cdaf9_0');
    expect(apptainerImage('library://alpine:latest')).toBe('library://alpine:latest');
    expect(apptainerImage('/shared/images/tool.sif')).toBe('/shared/images/tool.sif');
  });

  it('refuses a plan executor without a command', () => {
    expect(() => renderScript(plan([executor({ command: [] })]), { jobId: 'j', runtime: 'process' })).toThrow(/no command/);
  });
});

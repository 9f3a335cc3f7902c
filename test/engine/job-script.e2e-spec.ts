// The rendered job script, executed as Pulsar runs it: `bash ../inputs/tesp/job.sh` from <job>/working in a clean
// environment, inputs uploaded under <job>/inputs/root. With the process runtime, and with Docker when it answers.
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ExecutionPlan, PlanExecutor } from '../../src/engine/execution-plan';
import { parseFilesManifest, parseProgress } from '../../src/engine/job-progress';
import { JobScriptOptions, renderScript } from '../../src/engine/job-script';
import { dockerAvailable } from '../e2e/service-process';
import { describeWhen } from '../support/service-check';
import { ADVERSARIAL } from '../support/shell-values';

const HOST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const INPUT = 'first line\nsecond line with $HOME and `x`\n';
const ENV = Object.fromEntries(ADVERSARIAL.map((value, i) => [`V${i}`, value]));
/** The executors print their argv and then these variables, each value followed by a NUL. */
const PRINT_ENV = `printf '%s\\0' ${ADVERSARIAL.map((_, i) => `"$V${i}"`).join(' ')}`;
const nulJoined = (values: readonly string[]) => Buffer.from(values.map((v) => `${v}\0`).join(''));

const base = (overrides: Partial<PlanExecutor> & Pick<PlanExecutor, 'index' | 'command'>): PlanExecutor => ({ image: 'alpine:latest', env: {}, ignoreError: false, ...overrides });

class Job {
  readonly dir: string;
  readonly working: string;
  readonly root: string;
  readonly meta: string;
  child?: ChildProcess;

  constructor(readonly plan: ExecutionPlan, readonly options: JobScriptOptions) {
    this.dir = path.join(mkdtempSync(path.join(os.tmpdir(), 'tesp-job-')), 'job with space');
    this.working = path.join(this.dir, 'working');
    this.root = path.join(this.working, 'root');
    this.meta = path.join(this.dir, 'metadata', 'tesp');
    mkdirSync(path.join(this.dir, 'inputs', 'root', 'in'), { recursive: true });
    mkdirSync(path.join(this.dir, 'inputs', 'tesp'), { recursive: true });
    mkdirSync(this.working, { recursive: true });
    mkdirSync(path.join(this.dir, 'metadata'), { recursive: true });
    writeFileSync(path.join(this.dir, 'inputs', 'root', 'in', 'data.txt'), INPUT);
    writeFileSync(path.join(this.dir, 'inputs', 'tesp', 'job.sh'), renderScript(plan, options));
  }

  start(): ChildProcess {
    this.child = spawn('env', ['-i', `PATH=${HOST_PATH}`, `HOME=${os.tmpdir()}`, `TMPDIR=${os.tmpdir()}`, 'LC_CTYPE=C.UTF-8', 'bash', '../inputs/tesp/job.sh'], { cwd: this.working, stdio: ['ignore', 'pipe', 'pipe'] });
    return this.child;
  }

  /** Runs the script to its end: its exit code and what it printed itself. */
  async run(): Promise<{ code: number | null; stderr: string }> {
    const child = this.start();
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
    return { code, stderr };
  }

  metaBytes(name: string): Buffer {
    return readFileSync(path.join(this.meta, name));
  }

  text(name: string): string {
    return this.metaBytes(name).toString('utf8');
  }

  cleanup(): void {
    rmSync(path.dirname(this.dir), { recursive: true, force: true });
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(test: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function mounts(): ExecutionPlan['mounts'] {
  return [
    { path: '/out', readOnly: false, type: 'DIRECTORY' },
    { path: '/in/data.txt', readOnly: true, type: 'FILE' },
  ];
}

function planOf(executors: PlanExecutor[]): ExecutionPlan {
  return { taskId: 'task-js', mounts: mounts(), inputs: [{ index: 0, url: 'file:///data.txt', type: 'FILE', path: '/in/data.txt' }], outputs: [], executors, limits: {} };
}

const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** The checks both runtimes share: progress, streams, the stopped executor, the manifest and the links. */
function expectRunOf(job: Job, refusedStderr: RegExp): void {
  const progress = parseProgress(job.text('progress'));
  expect(progress.executors.map((e) => [e.index, e.exitCode])).toEqual([
    [0, 0],
    [1, 1],
    [2, 3],
    [3, 5],
  ]);
  for (const e of progress.executors) {
    expect(e.startTime).toMatch(ISO_MS);
    expect(e.endTime).toMatch(ISO_MS);
  }
  expect(progress.endTime).toMatch(ISO_MS);

  // Executor 0: stdin from the input, its stdout both in metadata and in the task's own file, argv and env exact.
  const expected = Buffer.concat([Buffer.from(INPUT), nulJoined(ADVERSARIAL), nulJoined(ADVERSARIAL)]);
  expect(job.metaBytes('0.stdout')).toEqual(expected);
  expect(readFileSync(path.join(job.root, 'out', 'stdout.txt'))).toEqual(expected);
  expect(job.text('0.stderr')).toBe('to stderr\n');

  // Executor 1's stdout was a link planted by executor 0.
  expect(job.text('1.stderr')).toMatch(refusedStderr);
  expect(job.text('1.stdout')).toBe('');
  // Executor 2 failed with ignore_error, so 3 ran; 3 failed, so 4 never started.
  expect(job.text('3.stdout')).toBe('still runs\n');
  expect(existsSync(path.join(job.meta, '4.stdout'))).toBe(false);

  // Links: the one to a file inside the task is that file now; the others are gone, with a note.
  const good = path.join(job.root, 'out', 'good');
  expect(lstatSync(good).isFile()).toBe(true);
  expect(readFileSync(good, 'utf8')).toBe(INPUT);
  expect(existsSync(path.join(job.root, 'out', 'evil'))).toBe(false);
  expect(() => lstatSync(path.join(job.root, 'out', 'evil'))).toThrow();
  expect(() => lstatSync(path.join(job.root, 'out', 'trap'))).toThrow();
  expect(job.text('notes').split('\n').filter(Boolean).sort()).toEqual([
    'outputs: /out/evil is a symbolic link that leads outside the task; removed',
    'outputs: /out/trap is a symbolic link that leads outside the task; removed',
  ]);

  const files = parseFilesManifest(job.metaBytes('files')).sort((a, b) => a.path.localeCompare(b.path));
  expect(files).toEqual([
    { path: 'out/good', size: Buffer.byteLength(INPUT) },
    { path: 'out/stdout.txt', size: expected.length },
    { path: 'out/sub dir/x\ty', size: 2 },
  ]);
}

describe('job script, process runtime', () => {
  const jobs: Job[] = [];
  afterAll(() => jobs.forEach((job) => job.cleanup()));

  it('runs executors in order with exact argv, env and streams, then leaves no way out through links', async () => {
    const outside = mkdtempSync(path.join(os.tmpdir(), 'tesp-outside-'));
    const victim = path.join(outside, 'victim.txt');
    writeFileSync(victim, 'untouched');
    const first = [
      'cat',
      'printf "%s\\0" "$@"',
      PRINT_ENV,
      'echo to stderr >&2',
      'o=$TESP_TASK_ROOT/out',
      'ln -s /etc/passwd "$o/evil"',
      'ln -s "$TESP_TASK_ROOT/in/data.txt" "$o/good"',
      `ln -s '${victim}' "$o/trap"`,
      'mkdir "$o/sub dir" && printf ok > "$o/sub dir/$(printf "x\\ty")"',
    ].join('\n');
    const job = new Job(
      planOf([
        base({ index: 0, command: ['/bin/sh', '-c', first, 'sh', ...ADVERSARIAL], env: ENV, stdin: '/in/data.txt', stdout: '/out/stdout.txt' }),
        base({ index: 1, command: ['/bin/sh', '-c', 'echo must not be written'], stdout: '/out/trap', ignoreError: true }),
        base({ index: 2, command: ['/bin/sh', '-c', 'exit 3'], ignoreError: true }),
        base({ index: 3, command: ['/bin/sh', '-c', 'echo still runs; exit 5'] }),
        base({ index: 4, command: ['/bin/sh', '-c', 'echo never'] }),
      ]),
      { jobId: 'job-process', runtime: 'process' },
    );
    jobs.push(job);
    const { code, stderr } = await job.run();
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    expectRunOf(job, /stdout \/out\/trap leads outside the task/);
    expect(readFileSync(victim, 'utf8')).toBe('untouched');
    rmSync(outside, { recursive: true, force: true });
  });

  it('runs argv without a shell, in the workdir, with exactly the runtime environment', async () => {
    const job = new Job(planOf([base({ index: 0, command: ['env'], workdir: '/out/w', env: { A: 'a b', PATH: '/bin:/usr/bin' } }), base({ index: 1, command: ['pwd'], workdir: '/out/w' }), base({ index: 2, command: ['printf', '%s|', '$HOME', '*'] })]), { jobId: 'job-env', runtime: 'process' });
    jobs.push(job);
    expect((await job.run()).code).toBe(0);
    expect(job.text('0.stdout').split('\n').filter(Boolean).sort()).toEqual(['A=a b', `HOME=${job.root}`, 'PATH=/bin:/usr/bin', `TESP_TASK_ROOT=${job.root}`]);
    expect(job.text('1.stdout')).toBe(`${path.join(job.root, 'out', 'w')}\n`);
    expect(job.text('2.stdout')).toBe('$HOME|*|');
  });

  it('gives a command that cannot be found exit code 127 and ends the job normally', async () => {
    const job = new Job(planOf([base({ index: 0, command: ['no-such-command-here'] })]), { jobId: 'job-127', runtime: 'process' });
    jobs.push(job);
    expect((await job.run()).code).toBe(0);
    expect(parseProgress(job.text('progress')).executors[0].exitCode).toBe(127);
  });

  it('stops the running process and what it started on SIGTERM, with exit code 143', async () => {
    const job = new Job(planOf([base({ index: 0, command: ['/bin/sh', '-c', 'sleep 600 & echo $! > "$TESP_TASK_ROOT/out/child"; echo $$ > "$TESP_TASK_ROOT/out/pid"; wait'] })]), { jobId: 'job-cancel-p', runtime: 'process' });
    jobs.push(job);
    const child = job.start();
    const closed = new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
    const childFile = path.join(job.root, 'out', 'child');
    await until(() => existsSync(childFile) && readFileSync(childFile, 'utf8').endsWith('\n'), 10_000, 'the executor to start');
    const pids = [Number(readFileSync(path.join(job.root, 'out', 'pid'), 'utf8')), Number(readFileSync(childFile, 'utf8'))];
    child.kill('SIGTERM');
    expect(await closed).toBe(143);
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return !/State:\s*Z/.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
      } catch {
        return false;
      }
    };
    await until(() => !pids.some(alive), 5_000, 'the executor processes to end');
  });
});

describeWhen('job script, docker runtime', dockerAvailable(), 'no Docker engine answers on /var/run/docker.sock (run docker/start-dockerd.sh)', () => {
  const jobs: Job[] = [];
  afterAll(() => jobs.forEach((job) => job.cleanup()));
  const containersOf = (jobId: string) => execFileSync('docker', ['ps', '-a', '--filter', `label=tesp.job=${jobId}`, '--format', '{{.Names}}'], { encoding: 'utf8' }).split('\n').filter(Boolean);

  it('runs containers in order with exact argv, env and streams, then leaves no way out through links', async () => {
    const passwd = readFileSync('/etc/passwd');
    const first = [
      'cat',
      'printf "%s\\0" "$@"',
      PRINT_ENV,
      'echo to stderr >&2',
      // As the container sees them: /etc/passwd is the image's, /in/data.txt the input.
      'ln -s /etc/passwd /out/evil',
      'ln -s /in/data.txt /out/good',
      'ln -s ../../../../../etc/passwd /out/trap',
      'mkdir "/out/sub dir" && printf ok > "/out/sub dir/$(printf "x\\ty")"',
    ].join('\n');
    const job = new Job(
      planOf([
        base({ index: 0, command: ['sh', '-c', first, 'sh', ...ADVERSARIAL], env: ENV, stdin: '/in/data.txt', stdout: '/out/stdout.txt' }),
        base({ index: 1, command: ['sh', '-c', 'echo must not be written'], stdout: '/out/trap', ignoreError: true }),
        base({ index: 2, command: ['sh', '-c', 'exit 3'], ignoreError: true }),
        base({ index: 3, command: ['sh', '-c', 'echo still runs; exit 5'] }),
        base({ index: 4, command: ['sh', '-c', 'echo never'] }),
      ]),
      { jobId: `job-docker-${process.pid}`, runtime: 'docker' },
    );
    jobs.push(job);
    const { code, stderr } = await job.run();
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    // Inside a container a link cannot lead out of the task root: /out/trap names $R/etc/passwd, which cannot be
    // created (no such directory), so executor 1 fails to open it and the host file is untouched.
    expectRunOf(job, /No such file or directory/);
    expect(readFileSync('/etc/passwd')).toEqual(passwd);
    expect(existsSync(path.join(job.root, 'etc'))).toBe(false);
    expect(containersOf(job.options.jobId)).toEqual([]);
  });

  it('runs executors as nobody without capabilities, writing into the writable mounts; runAsRoot gives root back', async () => {
    const probe = 'echo "uid=$(id -u)"; grep -E "^(CapEff|NoNewPrivs):" /proc/self/status; echo written > /out/by-executor.txt && cat /out/by-executor.txt';
    const who = async (runAsRoot: boolean) => {
      const job = new Job(planOf([base({ index: 0, command: ['sh', '-c', probe] })]), { jobId: `job-user-${runAsRoot}-${process.pid}`, runtime: 'docker', runAsRoot });
      jobs.push(job);
      expect(await job.run()).toEqual({ code: 0, stderr: '' });
      return job.text('0.stdout');
    };
    const nobody = await who(false);
    // Not root: nobody when the script runs as root (as here), else the script's own user.
    expect(nobody).toMatch(new RegExp(`^uid=${process.getuid!() === 0 ? 65534 : process.getuid!()}$`, 'm'));
    expect(nobody).toMatch(/^CapEff:\s+0000000000000000$/m);
    expect(nobody).toMatch(/^NoNewPrivs:\s+1$/m);
    expect(nobody).toMatch(/^written$/m);
    const root = await who(true);
    expect(root).toMatch(/^uid=0$/m);
    expect(root).toMatch(/^NoNewPrivs:\s+1$/m);
    expect(root).toMatch(/^written$/m);
  });

  it('removes the running container on SIGTERM and exits 143', async () => {
    const jobId = `job-cancel-${process.pid}`;
    const job = new Job(planOf([base({ index: 0, command: ['sleep', '600'] })]), { jobId, runtime: 'docker' });
    jobs.push(job);
    const child = job.start();
    const closed = new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
    await until(() => execFileSync('docker', ['ps', '--filter', `label=tesp.job=${jobId}`, '--format', '{{.Names}}'], { encoding: 'utf8' }).includes(`tesp-${jobId}-0`), 15_000, 'the container to run');
    const signalled = Date.now();
    child.kill('SIGTERM');
    expect(await closed).toBe(143);
    await until(() => containersOf(jobId).length === 0, 5_000 - (Date.now() - signalled), 'the container to be removed');
  });
});

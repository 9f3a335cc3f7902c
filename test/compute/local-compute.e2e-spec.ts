// LocalComputeBackend through its port, against a real Docker engine (and the process runtime), built by the
// compute module's factory from settings. Outputs go to a temporary directory through the file storage backend.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createLogger } from '../../src/common/logger';
import { createComputeBackend } from '../../src/compute/compute.module';
import type { LocalComputeBackend } from '../../src/compute/local/local-compute.backend';
import { loadSettings } from '../../src/config/settings.loader';
import type { TaskUpdate } from '../../src/domain/task-update';
import { StoredTask, TesExecutor, TesState } from '../../src/domain/tes-task';
import { StorageRegistry } from '../../src/storage/storage-registry';
import { containersOf, describeWithDocker, dockerAvailable, sleep } from '../e2e/service-process';

type Finished = Extract<TaskUpdate, { kind: 'finished' }>;
type ExecutorFinished = Extract<TaskUpdate, { kind: 'executor-finished' }>;

const ID_PREFIX = `compute-test-${process.pid}-`;
let taskCounter = 0;

function makeTask(overrides: Partial<StoredTask>): StoredTask {
  taskCounter += 1;
  return {
    id: `${ID_PREFIX}${taskCounter}-${Date.now()}`,
    state: TesState.INITIALIZING,
    creation_time: new Date().toISOString(),
    executors: [],
    logs: [],
    control: { attempt: 1, update_seq: 0 },
    ...overrides,
  };
}

const alpine = (script: string, extra: Partial<TesExecutor> = {}): TesExecutor => ({ image: 'alpine:latest', command: ['sh', '-c', script], ...extra });

class Harness {
  readonly dir = mkdtempSync(path.join(os.tmpdir(), 'tesp-compute-'));
  /** Where outputs are uploaded to (the one allowed file storage directory). */
  readonly outDir = path.join(this.dir, 'out');
  readonly updates = new Map<string, TaskUpdate[]>();
  /** Sequence numbers as the backend gave them, per task. */
  readonly seqs = new Map<string, number[]>();
  readonly backend: LocalComputeBackend;

  constructor(readonly overrides: Record<string, unknown>) {
    this.backend = this.newBackend();
  }

  /** Another backend on the same data directory, as a restarted tesp builds it. */
  newBackend(): LocalComputeBackend {
    const settings = loadSettings({
      env: {},
      overrides: { data_dir: path.join(this.dir, 'data'), 'storage.file.allowed_dirs': [this.outDir], 'compute.local.log_refresh_ms': 100, ...this.overrides },
    });
    const backend = createComputeBackend(settings.compute, path.join(this.dir, 'data'), StorageRegistry.fromSettings(settings.storage), createLogger('silent')) as LocalComputeBackend;
    backend.onUpdate((taskId, update, seq) => {
      this.updates.set(taskId, [...(this.updates.get(taskId) ?? []), update]);
      this.seqs.set(taskId, [...(this.seqs.get(taskId) ?? []), seq]);
      return Promise.resolve(true);
    });
    return backend;
  }

  of(taskId: string): TaskUpdate[] {
    return this.updates.get(taskId) ?? [];
  }

  /** The updates once the task has finished and its run has cleaned up. */
  async finished(taskId: string, backend = this.backend, timeoutMs = 30_000): Promise<TaskUpdate[]> {
    await this.until(taskId, (u) => u.kind === 'finished', timeoutMs);
    await backend.settled(taskId);
    return this.of(taskId);
  }

  async until(taskId: string, test: (u: TaskUpdate) => boolean, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.of(taskId).some(test)) {
      if (Date.now() > deadline) throw new Error(`task ${taskId}: update not seen: ${JSON.stringify(this.of(taskId))}`);
      await sleep(50);
    }
  }

  out(name: string): string {
    return readFileSync(path.join(this.outDir, name), 'utf8');
  }

  taskDir(taskId: string): string {
    return path.join(this.dir, 'data', 'work', taskId);
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const finishedOf = (updates: TaskUpdate[]) => updates.find((u): u is Finished => u.kind === 'finished')!;
const exitsOf = (updates: TaskUpdate[]) => updates.filter((u): u is ExecutorFinished => u.kind === 'executor-finished');
const started = (u: TaskUpdate) => u.kind === 'executor-started';

function removeTestContainers(): void {
  if (!dockerAvailable()) return;
  const names = execFileSync('docker', ['ps', '-a', '--filter', 'label=tesp.task', '--format', '{{.Names}}'], { encoding: 'utf8' })
    .split('\n')
    .filter((name) => name.startsWith(`tesp-${ID_PREFIX}`));
  if (names.length > 0) execFileSync('docker', ['rm', '-f', ...names], { stdio: 'ignore' });
}

describeWithDocker('LocalComputeBackend with the Docker runtime', () => {
  let h: Harness;

  beforeEach(() => {
    h = new Harness({ 'compute.local.runtime': 'docker', 'compute.local.pull_images': false, 'compute.local.log_tail_bytes': 1024 });
  });

  afterEach(async () => {
    await h.backend.detach();
    h.cleanup();
  });

  afterAll(removeTestContainers);

  it('runs executors in order, records every exit code and goes on past a failure with ignore_error', async () => {
    const task = makeTask({
      executors: [alpine('echo one'), alpine('echo two; exit 3', { ignore_error: true }), alpine('echo three')],
    });
    await h.backend.submit(task);
    const updates = await h.finished(task.id);
    expect(finishedOf(updates).state).toBe('COMPLETE');
    expect(exitsOf(updates).map((e) => [e.index, e.exitCode, e.stdout])).toEqual([
      [0, 0, 'one\n'],
      [1, 3, 'two\n'],
      [2, 0, 'three\n'],
    ]);
    expect(updates.filter((u) => u.kind === 'running')).toHaveLength(1);
    expect(containersOf(task.id)).toEqual([]);
    expect(existsSync(h.taskDir(task.id))).toBe(false);
  });

  it('stops at a failing executor without ignore_error and still collects the outputs', async () => {
    const task = makeTask({
      outputs: [{ path: '/out/partial.txt', url: path.join(h.outDir, 'partial.txt'), type: 'FILE' }],
      executors: [alpine('echo partial > /out/partial.txt; exit 2'), alpine('echo never > /out/partial.txt')],
    });
    await h.backend.submit(task);
    const updates = await h.finished(task.id);
    expect(finishedOf(updates).state).toBe('EXECUTOR_ERROR');
    expect(exitsOf(updates).map((e) => e.exitCode)).toEqual([2]);
    expect(updates.filter(started)).toHaveLength(1);
    const uploaded = updates.find((u): u is Extract<TaskUpdate, { kind: 'output-uploaded' }> => u.kind === 'output-uploaded');
    expect(uploaded?.outputs).toEqual([{ url: path.join(h.outDir, 'partial.txt'), path: '/out/partial.txt', size_bytes: '8' }]);
    expect(h.out('partial.txt')).toBe('partial\n');
  });

  it('keeps EXECUTOR_ERROR when outputs then fail too, and says why in a system log', async () => {
    const task = makeTask({
      outputs: [{ path: '/out/x.txt', url: '/not/allowed/x.txt', type: 'FILE' }],
      executors: [alpine('echo x > /out/x.txt; exit 1')],
    });
    await h.backend.submit(task);
    const updates = await h.finished(task.id);
    expect(finishedOf(updates).state).toBe('EXECUTOR_ERROR');
    const logs = updates.filter((u): u is Extract<TaskUpdate, { kind: 'system-log' }> => u.kind === 'system-log');
    expect(logs.some((l) => /outputs after the executor error: uploading outputs\[0\]/.test(l.message))).toBe(true);
  });

  it('ends SYSTEM_ERROR with the reason when outputs fail after the executors succeeded', async () => {
    const task = makeTask({
      outputs: [{ path: '/out/x.txt', url: '/not/allowed/x.txt', type: 'FILE' }],
      executors: [alpine('echo x > /out/x.txt')],
    });
    await h.backend.submit(task);
    const finished = finishedOf(await h.finished(task.id));
    expect(finished.state).toBe('SYSTEM_ERROR');
    expect(finished.reason).toMatch(/uploading outputs\[0\] \(\/out\/x.txt to \/not\/allowed\/x.txt\) failed/);
  });

  it('feeds stdin from a file and writes stdout and stderr files that become outputs', async () => {
    const task = makeTask({
      inputs: [{ path: '/in/text.txt', content: 'hello world\n', type: 'FILE' }],
      outputs: [
        { path: '/logs/out.txt', url: path.join(h.outDir, 'out.txt'), type: 'FILE' },
        { path: '/logs/err.txt', url: path.join(h.outDir, 'err.txt'), type: 'FILE' },
      ],
      executors: [alpine('tr a-z A-Z; echo oops >&2', { stdin: '/in/text.txt', stdout: '/logs/out.txt', stderr: '/logs/err.txt' })],
    });
    await h.backend.submit(task);
    const updates = await h.finished(task.id);
    expect(finishedOf(updates).state).toBe('COMPLETE');
    expect(h.out('out.txt')).toBe('HELLO WORLD\n');
    expect(h.out('err.txt')).toBe('oops\n');
    expect(exitsOf(updates)[0]).toMatchObject({ stdout: 'HELLO WORLD\n', stderr: 'oops\n' });
  });

  it('sets the environment and the working directory', async () => {
    const task = makeTask({ executors: [alpine('echo "$GREETING"; pwd', { env: { GREETING: 'hi there' }, workdir: '/work/sub' })] });
    await h.backend.submit(task);
    const updates = await h.finished(task.id);
    expect(exitsOf(updates)[0].stdout).toBe('hi there\n/work/sub\n');
  });

  it('shares volumes between executors', async () => {
    const task = makeTask({ volumes: ['/shared'], executors: [alpine('echo from-first > /shared/note'), alpine('cat /shared/note')] });
    await h.backend.submit(task);
    const updates = await h.finished(task.id);
    expect(finishedOf(updates).state).toBe('COMPLETE');
    expect(exitsOf(updates)[1].stdout).toBe('from-first\n');
  });

  it('mounts inputs read-only', async () => {
    const task = makeTask({
      inputs: [{ path: '/in/data.txt', content: 'keep me', type: 'FILE' }],
      executors: [alpine('cat /in/data.txt; echo changed > /in/data.txt')],
    });
    await h.backend.submit(task);
    const updates = await h.finished(task.id);
    expect(finishedOf(updates).state).toBe('EXECUTOR_ERROR');
    expect(exitsOf(updates)[0].stdout).toBe('keep me');
    expect(exitsOf(updates)[0].stderr).toMatch(/Read-only file system/);
  });

  it('sets cpu_cores and ram_gb as container limits and gives no network', async () => {
    const task = makeTask({
      resources: { cpu_cores: 1, ram_gb: 0.25 },
      executors: [alpine('ls /sys/class/net; cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; sleep 2')],
    });
    await h.backend.submit(task);
    await h.until(task.id, started);
    const [name] = containersOf(task.id);
    const inspected = JSON.parse(execFileSync('docker', ['inspect', name], { encoding: 'utf8' }))[0];
    expect(inspected.State.Running).toBe(true);
    expect(inspected.HostConfig).toMatchObject({ NanoCpus: 1e9, Memory: 256 * 1024 ** 2, MemorySwap: 256 * 1024 ** 2, NetworkMode: 'none' });
    expect(inspected.Config.Labels).toMatchObject({ 'tesp.task': task.id, 'tesp.executor': '0' });
    expect(name).toBe(`tesp-${task.id}-0`);
    const updates = await h.finished(task.id);
    expect(finishedOf(updates).state).toBe('COMPLETE');
    expect(exitsOf(updates)[0].stdout).toBe(`lo\n${256 * 1024 ** 2}\n`);
  });

  it('keeps only the last log_tail_bytes of a long output, while the stdout file gets all of it', async () => {
    const task = makeTask({
      outputs: [{ path: '/logs/full.txt', url: path.join(h.outDir, 'full.txt'), type: 'FILE' }],
      // seq 1 40000 prints 228,894 bytes (over 200 KiB); é is two bytes, so a cut can fall inside one.
      executors: [alpine('seq 1 40000; echo THE-END; yes é | head -n 5000 >&2', { stdout: '/logs/full.txt' })],
    });
    await h.backend.submit(task);
    const updates = await h.finished(task.id);
    const exit = exitsOf(updates)[0];
    expect(Buffer.byteLength(exit.stdout)).toBeLessThanOrEqual(1024);
    expect(Buffer.byteLength(exit.stdout)).toBeGreaterThan(1000);
    expect(exit.stdout.endsWith('39999\n40000\nTHE-END\n')).toBe(true);
    expect(Buffer.byteLength(exit.stderr)).toBeLessThanOrEqual(1024);
    expect(exit.stderr).toMatch(/^\n?(é\n)+$/);
    expect(statSync(path.join(h.outDir, 'full.txt')).size).toBe(228_894 + 'THE-END\n'.length);
  });

  it('refreshes the tails while an executor runs', async () => {
    const task = makeTask({ executors: [alpine('echo early; echo warn >&2; sleep 2; echo late')] });
    await h.backend.submit(task);
    const updates = await h.finished(task.id);
    const finishedAt = updates.findIndex((u) => u.kind === 'executor-finished');
    const progress = updates.findIndex((u) => u.kind === 'executor-output' && u.stdout === 'early\n' && u.stderr === 'warn\n');
    expect(progress).toBeGreaterThanOrEqual(0);
    expect(progress).toBeLessThan(finishedAt);
    expect(exitsOf(updates)[0].stdout).toBe('early\nlate\n');
  });

  it('ends SYSTEM_ERROR naming an image that is not there (pull_images false)', async () => {
    const task = makeTask({ executors: [{ image: 'tesp-test/no-such-image:never', command: ['true'] }] });
    await h.backend.submit(task);
    const finished = finishedOf(await h.finished(task.id));
    expect(finished.state).toBe('SYSTEM_ERROR');
    expect(finished.reason).toMatch(/image tesp-test\/no-such-image:never is not present locally/);
  });

  it('ends SYSTEM_ERROR naming an image that cannot be pulled', async () => {
    const pulling = new Harness({ 'compute.local.runtime': 'docker', 'compute.local.pull_images': true });
    try {
      const task = makeTask({ executors: [{ image: 'tesp-test/no-such-image:never', command: ['true'] }] });
      await pulling.backend.submit(task);
      const finished = finishedOf(await pulling.finished(task.id, pulling.backend, 120_000));
      expect(finished.state).toBe('SYSTEM_ERROR');
      expect(finished.reason).toMatch(/^could not pull image tesp-test\/no-such-image:never: /);
    } finally {
      pulling.cleanup();
    }
  });

  it('reports a command that cannot be executed as the executor failing with 127', async () => {
    const task = makeTask({ executors: [{ image: 'alpine:latest', command: ['/no/such/binary'] }] });
    await h.backend.submit(task);
    const updates = await h.finished(task.id);
    expect(finishedOf(updates).state).toBe('EXECUTOR_ERROR');
    expect(exitsOf(updates)[0].exitCode).toBe(127);
    expect(exitsOf(updates)[0].stderr).toMatch(/cannot execute "\/no\/such\/binary"/);
  });

  it('stages in and out a task without executors', async () => {
    const task = makeTask({
      inputs: [{ path: '/data/in.txt', content: 'moved', type: 'FILE' }],
      outputs: [{ path: '/data/in.txt', url: path.join(h.outDir, 'moved.txt'), type: 'FILE' }],
    });
    await h.backend.submit(task);
    const updates = await h.finished(task.id);
    expect(finishedOf(updates).state).toBe('COMPLETE');
    expect(updates.some((u) => u.kind === 'running')).toBe(false);
    expect(h.out('moved.txt')).toBe('moved');
  });

  it('treats a second submit of a running task as a no-op', async () => {
    const task = makeTask({ executors: [alpine('sleep 1; echo once')] });
    const [first, second] = await Promise.all([h.backend.submit(task), h.backend.submit(task)]);
    expect(second).toEqual(first);
    const updates = await h.finished(task.id);
    expect(updates.filter(started)).toHaveLength(1);
    expect(exitsOf(updates)[0].stdout).toBe('once\n');
  });

  it('cancels a running task: the killed executor reports its exit, the container and task directory are gone', async () => {
    // sleep as PID 1 ignores SIGTERM, so this also waits out the stop timeout before the kill.
    const task = makeTask({ executors: [{ image: 'alpine:latest', command: ['sleep', '600'] }, alpine('echo never')] });
    await h.backend.submit(task);
    await h.until(task.id, started);
    expect(containersOf(task.id)).toHaveLength(1);
    expect(await h.backend.cancel(task)).toBe('its executors were stopped and removed');
    expect(containersOf(task.id)).toEqual([]);
    expect(existsSync(h.taskDir(task.id))).toBe(false);
    // SIGKILL after the stop timeout: 128 + 9. Nothing more runs, and the cancel, not the run, ends the task.
    expect(exitsOf(h.of(task.id)).map((e) => [e.index, e.exitCode])).toEqual([[0, 137]]);
    expect(h.of(task.id).some((u) => u.kind === 'finished')).toBe(false);
  });

  it('cancels containers it does not track (left by an earlier process)', async () => {
    const task = makeTask({ executors: [{ image: 'alpine:latest', command: ['sleep', '600'] }] });
    execFileSync('docker', ['run', '-d', '--network', 'none', '--name', `tesp-${task.id}-0`, '--label', `tesp.task=${task.id}`, '--label', 'tesp.executor=0', 'alpine:latest', 'sleep', '600'], { stdio: 'ignore' });
    expect(await h.backend.cancel(task)).toBe('stopped 1 executor(s) no run in this process followed');
    expect(containersOf(task.id)).toEqual([]);
  });

  it('hands out a reference naming the engine and task directory, and adopts nothing another engine ran', async () => {
    const task = makeTask({ executors: [alpine('echo ref')] });
    const ref = await h.backend.submit(task);
    expect(ref).toEqual({
      backend: 'local',
      runtime: 'docker',
      location: expect.stringMatching(/^docker engine \S+$/),
      task_dir: h.taskDir(task.id),
      executors: `containers labelled tesp.task=${task.id}`,
    });
    await h.finished(task.id);
    const elsewhere = { ...task, state: TesState.RUNNING, control: { attempt: 1, update_seq: 3, backend_ref: { ...ref, location: 'docker engine SOMEWHERE-ELSE' } } };
    const outcome = await h.backend.resume(elsewhere);
    expect(outcome).toEqual({ kind: 'lost', reason: expect.stringContaining('it ran with the docker runtime at docker engine SOMEWHERE-ELSE') });
  });

  it('numbers updates on from the sequence the task already has', async () => {
    const task = makeTask({ executors: [alpine('true')], control: { attempt: 1, update_seq: 41 } });
    await h.backend.submit(task);
    await h.finished(task.id);
    const seqs = h.seqs.get(task.id)!;
    expect(seqs[0]).toBe(42);
    expect(seqs).toEqual(seqs.map((_, i) => 42 + i));
  });

  it('adopts containers after detach, as a restarted tesp does, and runs the remaining executors', async () => {
    const task = makeTask({
      outputs: [{ path: '/logs/done.txt', url: path.join(h.outDir, 'done.txt'), type: 'FILE' }],
      executors: [alpine('echo first'), alpine('sleep 3; echo done', { stdout: '/logs/done.txt' }), alpine('echo third')],
    });
    await h.backend.submit(task);
    await h.until(task.id, (u) => u.kind === 'executor-started' && u.index === 1);
    await h.backend.detach();
    expect(containersOf(task.id).sort()).toEqual([`tesp-${task.id}-0`, `tesp-${task.id}-1`]);
    h.updates.delete(task.id);

    const second = h.newBackend();
    const outcome = await second.resume({ ...task, state: TesState.RUNNING });
    expect(outcome).toEqual({ kind: 'resumed', detail: 'adopted 2 executor container(s), 1 still running' });
    const updates = await h.finished(task.id, second);
    expect(finishedOf(updates).state).toBe('COMPLETE');
    expect(exitsOf(updates).map((e) => [e.index, e.exitCode, e.stdout])).toEqual([
      [0, 0, 'first\n'],
      [1, 0, 'done\n'],
      [2, 0, 'third\n'],
    ]);
    expect(h.out('done.txt')).toBe('done\n');
    expect(containersOf(task.id)).toEqual([]);
  });

  it('restarts from staging a task left INITIALIZING without containers', async () => {
    const task = makeTask({ inputs: [{ path: '/in/a.txt', content: 'again', type: 'FILE' }], executors: [alpine('cat /in/a.txt')] });
    expect(await h.backend.resume(task)).toEqual({ kind: 'resumed', detail: 'no executor had started; staging the inputs again' });
    const updates = await h.finished(task.id);
    expect(finishedOf(updates).state).toBe('COMPLETE');
    expect(exitsOf(updates)[0].stdout).toBe('again');
  });

  it('starts afresh an executor whose container was created but never started', async () => {
    const task = makeTask({ executors: [{ image: 'alpine:latest', command: ['echo', 'ran for real'] }] });
    // What a process killed between create and start leaves behind.
    execFileSync('docker', ['create', '--name', `tesp-${task.id}-0`, '--label', `tesp.task=${task.id}`, '--label', 'tesp.executor=0', 'alpine:latest', 'echo', 'ran for real'], { stdio: 'ignore' });
    expect(await h.backend.resume({ ...task, state: TesState.RUNNING })).toMatchObject({ kind: 'resumed' });
    const updates = await h.finished(task.id);
    expect(finishedOf(updates).state).toBe('COMPLETE');
    expect(exitsOf(updates)[0].stdout).toBe('ran for real\n');
    expect(containersOf(task.id)).toEqual([]);
  });

  it('declares a RUNNING task lost when its containers are gone', async () => {
    const task = makeTask({ state: TesState.RUNNING, executors: [{ image: 'alpine:latest', command: ['true'] }] });
    expect(await h.backend.resume(task)).toEqual({ kind: 'lost', reason: 'its executor containers are gone' });
  });
});

describe('LocalComputeBackend with the process runtime', () => {
  let h: Harness;

  beforeEach(() => {
    h = new Harness({ 'compute.local.runtime': 'process' });
  });

  afterEach(async () => {
    await h.backend.detach();
    h.cleanup();
  });

  it('runs commands as processes under the task root, with stdin, stdout files, env and workdir', async () => {
    const task = makeTask({
      inputs: [{ path: '/in/words.txt', content: 'hello\n', type: 'FILE' }],
      outputs: [{ path: '/out/upper.txt', url: path.join(h.outDir, 'upper.txt'), type: 'FILE' }],
      executors: [
        { image: 'ignored', command: ['tr', 'a-z', 'A-Z'], stdin: '/in/words.txt', stdout: '/out/upper.txt' },
        { image: 'ignored', command: ['sh', '-c', 'cat "$TESP_TASK_ROOT/out/upper.txt"; echo "$WHO"; pwd'], workdir: '/work', env: { WHO: 'me' } },
      ],
    });
    await h.backend.submit(task);
    const updates = await h.finished(task.id);
    expect(finishedOf(updates).state).toBe('COMPLETE');
    const [first, second] = exitsOf(updates);
    expect(first.stdout).toBe('HELLO\n');
    expect(second.stdout).toBe(`HELLO\nme\n${path.join(h.taskDir(task.id), 'root', 'work')}\n`);
    expect(h.out('upper.txt')).toBe('HELLO\n');
  });

  it('reports exit codes and stops at a failure', async () => {
    const task = makeTask({ executors: [{ image: 'ignored', command: ['sh', '-c', 'exit 4'] }, { image: 'ignored', command: ['true'] }] });
    await h.backend.submit(task);
    const updates = await h.finished(task.id);
    expect(finishedOf(updates).state).toBe('EXECUTOR_ERROR');
    expect(exitsOf(updates).map((e) => e.exitCode)).toEqual([4]);
  });

  it('cancels a running process group: the executor reports the SIGTERM it got', async () => {
    const task = makeTask({ executors: [{ image: 'ignored', command: ['sh', '-c', 'sleep 600 & wait'] }] });
    await h.backend.submit(task);
    await h.until(task.id, started);
    await h.backend.cancel(task);
    expect(exitsOf(h.of(task.id)).map((e) => e.exitCode)).toEqual([143]);
    expect(existsSync(h.taskDir(task.id))).toBe(false);
  });

  it('cannot adopt a RUNNING task after a restart, and restarts an INITIALIZING one', async () => {
    const running = makeTask({ state: TesState.RUNNING, executors: [{ image: 'ignored', command: ['true'] }] });
    expect(await h.backend.resume(running)).toEqual({ kind: 'lost', reason: 'the process runtime cannot adopt executors another process started' });
    const initializing = makeTask({ executors: [{ image: 'ignored', command: ['echo', 'restarted'] }] });
    expect(await h.backend.resume(initializing)).toMatchObject({ kind: 'resumed' });
    expect(exitsOf(await h.finished(initializing.id))[0].stdout).toBe('restarted\n');
  });

  it('ends what a lost run left running before the task runs again', async () => {
    const task = makeTask({ state: TesState.RUNNING, executors: [{ image: 'ignored', command: ['sleep', '600'] }] });
    // What a killed tesp leaves: an executor in its own process group, its task root in its environment.
    const root = path.join(h.taskDir(task.id), 'root');
    const leftover = spawn('sleep', ['600'], { detached: true, stdio: 'ignore', env: { PATH: process.env.PATH, TESP_TASK_ROOT: root } });
    leftover.unref();
    const gone = new Promise((resolve) => leftover.once('exit', (_code, signal) => resolve(signal)));
    const outcome = await h.backend.resume(task);
    expect(outcome).toEqual({ kind: 'lost', reason: 'the process runtime cannot adopt executors another process started (ended 1 process(es) its earlier run left)' });
    expect(await gone).toBe('SIGTERM');
  });
});

/**
 * An earlier executor plants links at the paths later executors name as stdin, stdout and stderr, pointing at host
 * files outside the task root. tesp opens those files itself (as root where it talks to docker.sock): it must
 * neither read nor write through the links.
 */
function plantedLinkCases(runtime: 'docker' | 'process', describeIt: (name: string, body: () => void) => void): void {
  describeIt(`executor files behind planted links (${runtime} runtime)`, () => {
    let h: Harness;

    beforeEach(() => {
      h = new Harness({ 'compute.local.runtime': runtime, 'compute.local.pull_images': false });
    });

    afterEach(async () => {
      await h.backend.detach();
      h.cleanup();
    });

    it('neither reads nor writes outside the task root', async () => {
      const secret = path.join(h.dir, 'host-secret.txt');
      const targetOut = path.join(h.dir, 'host-stdout.txt');
      const targetErr = path.join(h.dir, 'host-stderr.txt');
      writeFileSync(secret, 'the host secret\n');
      writeFileSync(targetErr, 'keep me\n');
      // In a container the links live in the /io volume; with the process runtime under $TESP_TASK_ROOT.
      const io = runtime === 'docker' ? '/io' : '"$TESP_TASK_ROOT/io"';
      const plant = `mkdir -p ${io} && ln -s ${secret} ${io}/in && ln -s ${targetOut} ${io}/out && ln -s ${targetErr} ${io}/err`;
      const image = 'alpine:latest';
      const task = makeTask({
        volumes: ['/io'],
        executors: [
          { image, command: ['sh', '-c', plant] },
          { image, command: ['cat'], stdin: '/io/in', ignore_error: true },
          { image, command: ['echo', 'overwritten'], stdout: '/io/out', ignore_error: true },
          { image, command: ['sh', '-c', 'echo overwritten >&2'], stderr: '/io/err', ignore_error: true },
        ],
      });
      await h.backend.submit(task);
      const updates = await h.finished(task.id);
      expect(finishedOf(updates).state).toBe('COMPLETE');
      const exits = exitsOf(updates);
      expect(exits.map((e) => e.exitCode)).toEqual([0, 1, 1, 1]);
      expect(exits[1].stderr).toBe('tesp: executors[1]: stdin /io/in does not exist in the task\n');
      expect(exits[2].stderr).toMatch(/^tesp: executors\[2\]: stdout \/io\/out is a symbolic link/);
      expect(exits[3].stderr).toMatch(/^tesp: executors\[3\]: stderr \/io\/err is a symbolic link/);
      expect(JSON.stringify(updates)).not.toContain('the host secret');
      expect(existsSync(targetOut)).toBe(false);
      expect(readFileSync(targetErr, 'utf8')).toBe('keep me\n');
    });
  });
}

plantedLinkCases('docker', describeWithDocker);
plantedLinkCases('process', describe);

// LocalComputeBackend through its port, against a real Docker engine (and the process runtime).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createLogger } from '../../src/common/logger';
import type { TaskUpdate } from '../../src/compute/compute-backend';
import { DockerRuntime } from '../../src/compute/local/docker-runtime';
import { LocalComputeBackend } from '../../src/compute/local/local-compute.backend';
import { ProcessRuntime } from '../../src/compute/local/process-runtime';
import type { ExecutorRuntime } from '../../src/compute/local/executor-runtime';
import { FileStorageBackend } from '../../src/storage/file/file-storage.backend';
import { StagingService } from '../../src/storage/staging.service';
import { StorageRegistry } from '../../src/storage/storage-registry';
import { TaskRecord, TesState } from '../../src/tasks/tes-task';
import { containersOf, describeWithDocker, sleep } from '../e2e/service-process';

interface Harness {
  backend: LocalComputeBackend;
  updates: Map<string, TaskUpdate[]>;
  finished(taskId: string, timeoutMs?: number): Promise<TaskUpdate[]>;
  cleanup(): Promise<void>;
}

let taskCounter = 0;

function makeTask(overrides: Partial<TaskRecord>): TaskRecord {
  taskCounter += 1;
  return {
    id: `compute-test-${process.pid}-${taskCounter}-${Date.now()}`,
    state: TesState.INITIALIZING,
    creation_time: new Date().toISOString(),
    executors: [],
    logs: [],
    ...overrides,
  };
}

function harness(runtime: ExecutorRuntime, logTailBytes = 65536): Harness {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tesp-compute-'));
  const staging = new StagingService(new StorageRegistry([new FileStorageBackend([dir])]));
  const backend = new LocalComputeBackend(runtime, staging, { workDir: path.join(dir, 'work'), logTailBytes, logRefreshMs: 100, keepTaskDirs: false }, createLogger('silent'));
  const updates = new Map<string, TaskUpdate[]>();
  backend.onUpdate((taskId, update) => updates.set(taskId, [...(updates.get(taskId) ?? []), update]));
  return {
    backend,
    updates,
    async finished(taskId, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const list = updates.get(taskId) ?? [];
        if (list.some((u) => u.kind === 'finished')) return list;
        await sleep(50);
      }
      throw new Error(`task ${taskId} did not finish: ${JSON.stringify(updates.get(taskId))}`);
    },
    async cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const finishedOf = (updates: TaskUpdate[]) => updates.find((u) => u.kind === 'finished') as Extract<TaskUpdate, { kind: 'finished' }>;
const exitsOf = (updates: TaskUpdate[]) => updates.filter((u): u is Extract<TaskUpdate, { kind: 'executor-finished' }> => u.kind === 'executor-finished');

describeWithDocker('LocalComputeBackend with the Docker runtime', () => {
  let h: Harness;
  const runtime = () => new DockerRuntime({ docker_socket: '/var/run/docker.sock', allow_network: false, pull_images: false });

  beforeEach(() => {
    h = harness(runtime(), 1024);
  });

  afterEach(async () => {
    await h.cleanup();
  });

  it('runs containers with the task limits and no network', async () => {
    const task = makeTask({
      resources: { cpu_cores: 1, ram_gb: 0.25 },
      executors: [{ image: 'alpine:latest', command: ['sh', '-c', 'ls /sys/class/net; cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; sleep 2'] }],
    });
    await h.backend.submit(task);
    let inspected: any;
    for (let i = 0; i < 100 && !inspected; i++) {
      const names = containersOf(task.id);
      if (names.length) inspected = JSON.parse(execFileSync('docker', ['inspect', names[0]], { encoding: 'utf8' }))[0];
      else await sleep(50);
    }
    expect(inspected.HostConfig.NanoCpus).toBe(1e9);
    expect(inspected.HostConfig.Memory).toBe(256 * 1024 * 1024);
    expect(inspected.HostConfig.NetworkMode).toBe('none');
    const updates = await h.finished(task.id);
    expect(finishedOf(updates).state).toBe('COMPLETE');
    const stdout = exitsOf(updates)[0].stdout.split('\n');
    expect(stdout[0]).toBe('lo');
    expect(stdout[1]).toBe(String(256 * 1024 * 1024));
  });

  it('mounts inputs read-only', async () => {
    const task = makeTask({
      inputs: [{ path: '/in/data.txt', content: 'keep me', type: 'FILE' }],
      executors: [{ image: 'alpine:latest', command: ['sh', '-c', 'echo changed > /in/data.txt'] }],
    });
    await h.backend.submit(task);
    const updates = await h.finished(task.id);
    expect(finishedOf(updates).state).toBe('EXECUTOR_ERROR');
    expect(exitsOf(updates)[0].stderr).toMatch(/Read-only file system/);
  });

  it('keeps only the last bytes of a long output and refreshes tails while running', async () => {
    const task = makeTask({
      executors: [{ image: 'alpine:latest', command: ['sh', '-c', 'seq 1 20000; echo early-line >&2; sleep 1; echo THE-END'] }],
    });
    await h.backend.submit(task);
    const updates = await h.finished(task.id);
    const progress = updates.filter((u) => u.kind === 'executor-output');
    const finishedAt = updates.findIndex((u) => u.kind === 'executor-finished');
    expect(progress.length).toBeGreaterThan(0);
    expect(updates.indexOf(progress[0])).toBeLessThan(finishedAt);
    const exit = exitsOf(updates)[0];
    expect(Buffer.byteLength(exit.stdout)).toBeLessThanOrEqual(1024);
    expect(exit.stdout.endsWith('20000\nTHE-END\n')).toBe(true);
    expect(exit.stderr).toBe('early-line\n');
  });

  it('ends SYSTEM_ERROR naming an image that is not there', async () => {
    const task = makeTask({ executors: [{ image: 'tesp-test/no-such-image:never', command: ['true'] }] });
    await h.backend.submit(task);
    const finished = finishedOf(await h.finished(task.id));
    expect(finished.state).toBe('SYSTEM_ERROR');
    expect(finished.reason).toMatch(/image tesp-test\/no-such-image:never is not present locally/);
  });

  it('reports a command that cannot be executed as the executor failing with 127', async () => {
    const task = makeTask({ executors: [{ image: 'alpine:latest', command: ['/no/such/binary'] }] });
    await h.backend.submit(task);
    const updates = await h.finished(task.id);
    expect(finishedOf(updates).state).toBe('EXECUTOR_ERROR');
    expect(exitsOf(updates)[0].exitCode).toBe(127);
  });

  it('cancels a running task and removes its containers', async () => {
    const task = makeTask({ executors: [{ image: 'alpine:latest', command: ['sleep', '600'] }] });
    await h.backend.submit(task);
    while (!(h.updates.get(task.id) ?? []).some((u) => u.kind === 'executor-started')) await sleep(50);
    await h.backend.cancel(task.id);
    expect(containersOf(task.id)).toEqual([]);
    expect(h.backend.activeCount()).toBe(0);
  });

  it('adopts a running container after detach, as a restarted tesp does', async () => {
    const task = makeTask({ executors: [{ image: 'alpine:latest', command: ['sh', '-c', 'echo before; sleep 2; echo after'] }] });
    await h.backend.submit(task);
    while (!(h.updates.get(task.id) ?? []).some((u) => u.kind === 'executor-started')) await sleep(50);
    await h.backend.detach();
    expect(containersOf(task.id)).toHaveLength(1);

    const second = new LocalComputeBackend(runtime(), new StagingService(new StorageRegistry([])), (h.backend as any).settings, createLogger('silent'));
    const updates: TaskUpdate[] = [];
    second.onUpdate((_id, u) => updates.push(u));
    expect(await second.resume({ ...task, state: TesState.RUNNING })).toMatchObject({ kind: 'resumed' });
    for (let i = 0; i < 200 && !updates.some((u) => u.kind === 'finished'); i++) await sleep(50);
    expect(finishedOf(updates).state).toBe('COMPLETE');
    expect(exitsOf(updates)[0].stdout).toBe('before\nafter\n');
    expect(containersOf(task.id)).toEqual([]);
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

  it('declares a task lost when its containers are gone', async () => {
    const task = makeTask({ state: TesState.RUNNING, executors: [{ image: 'alpine:latest', command: ['true'] }] });
    expect(await h.backend.resume(task)).toEqual({ kind: 'lost', reason: 'its executor containers are gone' });
  });
});

describe('LocalComputeBackend with the process runtime', () => {
  let h: Harness;

  beforeEach(() => {
    h = harness(new ProcessRuntime());
  });

  afterEach(async () => {
    await h.cleanup();
  });

  it('runs commands as processes under the task root, with stdin and stdout files', async () => {
    const task = makeTask({
      inputs: [{ path: '/in/words.txt', content: 'hello\n', type: 'FILE' }],
      outputs: [],
      executors: [
        { image: 'ignored', command: ['tr', 'a-z', 'A-Z'], stdin: '/in/words.txt', stdout: '/out/upper.txt' },
        { image: 'ignored', command: ['sh', '-c', 'cat "$TESP_TASK_ROOT/out/upper.txt"; pwd'], workdir: '/work' },
      ],
    });
    await h.backend.submit(task);
    const updates = await h.finished(task.id);
    expect(finishedOf(updates).state).toBe('COMPLETE');
    const [first, second] = exitsOf(updates);
    expect(first.stdout).toBe('HELLO\n');
    expect(second.stdout).toMatch(/^HELLO\n.*\/root\/work\n$/);
  });

  it('cancels a running process group', async () => {
    const task = makeTask({ executors: [{ image: 'ignored', command: ['sh', '-c', 'sleep 600 & wait'] }] });
    await h.backend.submit(task);
    while (!(h.updates.get(task.id) ?? []).some((u) => u.kind === 'executor-started')) await sleep(50);
    const started = Date.now();
    await h.backend.cancel(task.id);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(h.backend.activeCount()).toBe(0);
  });

  it('cannot adopt executors after a restart', async () => {
    const task = makeTask({ state: TesState.RUNNING, executors: [{ image: 'ignored', command: ['true'] }] });
    expect(await h.backend.resume(task)).toEqual({ kind: 'lost', reason: 'the process runtime cannot adopt executors after a restart' });
  });
});

// The API dispatching to `tesp runner` processes over Pulsar's REST API, all on loopback: the API, two runners
// (one staging directly with its own storage backends, one through the API's uploads and downloads), an HTTP
// file server as the tasks' storage, and the local Docker engine the runners start containers on.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HttpFileServer, startHttpFileServer } from '../support/http-file-server';
import { RunnerProcess, TOKEN } from '../runner/runner-process';
import { describeWithDocker, containersOf, ServiceProcess, sleep } from './service-process';

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

describeWithDocker('dispatch to Pulsar runners over REST', () => {
  let files: HttpFileServer;
  let filesRoot: string;
  let direct: RunnerProcess;
  let relayed: RunnerProcess;
  let api: ServiceProcess;

  beforeAll(async () => {
    filesRoot = mkdtempSync(path.join(os.tmpdir(), 'tesp-pulsar-files-'));
    mkdirSync(path.join(filesRoot, 'in'), { recursive: true });
    writeFileSync(path.join(filesRoot, 'in', 'remote.txt'), 'remote input\n');
    files = await startHttpFileServer(filesRoot);
    direct = new RunnerProcess(RunnerProcess.tempDataDir(), { TESP_COMPUTE__LOCAL__RUNTIME: 'docker' });
    relayed = new RunnerProcess(RunnerProcess.tempDataDir(), { TESP_COMPUTE__LOCAL__RUNTIME: 'docker', TESP_RUNNER__DIRECT_STAGING: 'false' });
    await Promise.all([direct.start(), relayed.start()]);
    api = new ServiceProcess(ServiceProcess.tempDataDir(), {
      TESP_COMPUTE__BACKEND: 'pulsar',
      TESP_COMPUTE__PULSAR__RUNNERS: JSON.stringify([direct.entry('direct'), relayed.entry('relayed')]),
      TESP_COMPUTE__PULSAR__POLL_INTERVAL_MS: '200',
      TESP_COMPUTE__PULSAR__POLL_MAX_INTERVAL_MS: '1000',
      TESP_COMPUTE__PULSAR__HEALTH_INTERVAL_MS: '500',
      TESP_COMPUTE__PULSAR__LOG_REFRESH_MS: '300',
    });
    await api.start();
  });

  afterAll(async () => {
    await api?.stop();
    await Promise.all([direct?.stop(), relayed?.stop()]);
    await files?.close();
    for (const p of [api, direct, relayed]) p?.cleanup();
    rmSync(filesRoot, { recursive: true, force: true });
  });

  const threeExecutorTask = (runner: string, out: string) => ({
    name: `three executors on ${runner}`,
    resources: { backend_parameters: { runner } },
    inputs: [
      { path: '/in/content.txt', content: 'from content\n' },
      { path: '/in/remote.txt', url: `${files.base}/in/remote.txt` },
    ],
    outputs: [{ path: '/out/result.txt', url: `${files.base}/${out}` }],
    volumes: ['/out'],
    executors: [
      { image: 'alpine:latest', command: ['sh', '-c', 'cat /in/content.txt /in/remote.txt > /out/result.txt; echo first'] },
      { image: 'alpine:latest', command: ['sh', '-c', 'echo "$GREETING" >> /out/result.txt; echo to-stderr >&2'], env: { GREETING: "it's $HOME `x` \\ \"q\"" } },
      { image: 'alpine:latest', command: ['sh', '-c', 'wc -l < /out/result.txt; exit 0'] },
    ],
  });

  it.each(['direct', 'relayed'])('runs three executors with a content, an HTTP input and an HTTP output on runner %s', async (runner) => {
    const out = `out/${runner}-result.txt`;
    const id = await api.createTask(threeExecutorTask(runner, out));
    const task = await api.waitFor(id, undefined, 90_000);
    expect(task.state).toBe('COMPLETE');
    const expected = `from content\nremote input\nit's $HOME \`x\` \\ "q"\n`;
    expect(readFileSync(path.join(filesRoot, out), 'utf8')).toBe(expected);
    const log = task.logs.at(-1);
    expect(log.logs.map((l: any) => l.exit_code)).toEqual([0, 0, 0]);
    expect(log.logs[0].stdout).toBe('first\n');
    expect(log.logs[1].stderr).toBe('to-stderr\n');
    expect(log.logs[2].stdout.trim()).toBe('3');
    for (const l of log.logs) expect(Date.parse(l.end_time)).toBeGreaterThanOrEqual(Date.parse(l.start_time));
    expect(log.outputs).toEqual([{ url: `${files.base}/${out}`, path: '/out/result.txt', size_bytes: String(Buffer.byteLength(expected)) }]);
    expect(log.metadata['sha256:/out/result.txt']).toBe(sha256(expected));
    expect(log.system_logs.join('\n')).not.toContain(TOKEN);
    // The job directory was cleaned once the outputs were safe.
    const runnerProcess = runner === 'direct' ? direct : relayed;
    await sleep(500);
    expect(readdirSafe(path.join(runnerProcess.dataDir, 'runner', 'jobs'))).toEqual([]);
  });

  it('lists the runners in service-info with the runner backend parameter', async () => {
    const info = (await api.get('/service-info')).json;
    expect(info.tesResources_backend_parameters).toContain('runner');
    expect(info.tesp_compute.runners.map((r: any) => [r.name, r.up, r.tesp_runner])).toEqual([
      ['direct', true, true],
      ['relayed', true, true],
    ]);
    expect(JSON.stringify(info)).not.toContain(TOKEN);
  });

  it('refuses a task for a runner that is not configured with a 400 naming the runners', async () => {
    const { status, json } = await api.post('/tasks', { resources: { backend_parameters: { runner: 'nowhere' } }, executors: [{ image: 'alpine:latest', command: ['true'] }] });
    expect(status).toBe(400);
    expect(json.msg).toMatch(/backend_parameters.runner: must be one of the configured runners \(direct, relayed\), got "nowhere"/);
  });

  it('cancels a running sleep 600: CANCELED, with no container left behind within 5 s', async () => {
    const id = await api.createTask({ resources: { backend_parameters: { runner: 'relayed' } }, executors: [{ image: 'alpine:latest', command: ['sleep', '600'] }] });
    await api.waitForExecutor(id, 0, 60_000);
    expect(containersOf(id)).toHaveLength(1);
    const asked = Date.now();
    expect((await api.post(`/tasks/${id}:cancel`, {})).status).toBe(200);
    const task = await api.waitFor(id, ['CANCELED'], 30_000);
    const deadline = asked + 5000;
    while (containersOf(id).length > 0 && Date.now() < deadline) await sleep(100);
    expect(containersOf(id)).toEqual([]);
    expect(task.logs.at(-1).system_logs.join('\n')).toMatch(/canceled: job .* on runner relayed was stopped \(cancelled\)/);
  });

  it('keeps following a task while its runner is killed and started again, and ends it COMPLETE', async () => {
    const id = await api.createTask({
      resources: { backend_parameters: { runner: 'direct' } },
      outputs: [{ path: '/out/late.txt', url: `${files.base}/out/late.txt` }],
      executors: [{ image: 'alpine:latest', command: ['sh', '-c', 'sleep 4; echo late > /out/late.txt'] }],
    });
    await api.waitForExecutor(id, 0, 60_000);
    await direct.stop('SIGKILL');
    await sleep(1500);
    expect((await api.get(`/tasks/${id}`)).json.state).toBe('RUNNING');
    await direct.start();
    const task = await api.waitFor(id, undefined, 90_000);
    expect(task.state).toBe('COMPLETE');
    expect(readFileSync(path.join(filesRoot, 'out', 'late.txt'), 'utf8')).toBe('late\n');
    expect(task.logs.at(-1).system_logs.join('\n')).toMatch(/runner direct does not answer/);
  });

  it('keeps a task for a runner that is down QUEUED with the reason, and runs it once the runner is back', async () => {
    await relayed.stop();
    await sleep(1200); // a health check notices
    const id = await api.createTask({ resources: { backend_parameters: { runner: 'relayed' } }, executors: [{ image: 'alpine:latest', command: ['echo', 'back'] }] });
    await sleep(1500);
    const waiting = (await api.get(`/tasks/${id}?view=FULL`)).json;
    expect(waiting.state).toBe('QUEUED');
    expect(waiting.logs.at(-1).system_logs.join('\n')).toMatch(/waiting: runner relayed does not answer/);
    // A task for the other runner is not held up meanwhile.
    const other = await api.createTask({ resources: { backend_parameters: { runner: 'direct' } }, executors: [{ image: 'alpine:latest', command: ['true'] }] });
    expect((await api.waitFor(other, undefined, 60_000)).state).toBe('COMPLETE');
    expect((await api.get(`/tasks/${id}`)).json.state).toBe('QUEUED');
    await relayed.start();
    const task = await api.waitFor(id, undefined, 60_000);
    expect(task.state).toBe('COMPLETE');
    expect(task.logs.at(-1).logs[0].stdout).toBe('back\n');
  });
});

function readdirSafe(dir: string): string[] {
  try {
    return require('node:fs').readdirSync(dir) as string[];
  } catch {
    return [];
  }
}

/** The holder of a task, read straight from the SQLite file of the replicas' data directory. */
function holderOf(dataDir: string, id: string): string | undefined {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Database = require('better-sqlite3');
  const db = new Database(path.join(dataDir, 'tesp.sqlite'), { readonly: true });
  try {
    return db.prepare('SELECT lease_holder FROM tasks WHERE id = ?').get(id)?.lease_holder ?? undefined;
  } finally {
    db.close();
  }
}

describeWithDocker('two API replicas on one store, dispatching to one runner', () => {
  let runner: RunnerProcess;
  let dataDir: string;
  let replicas: Record<string, ServiceProcess>;

  const env = (holder: string, capacity: string) => ({
      TESP_SCHEDULER__HOLDER_ID: holder,
      TESP_SCHEDULER__LEASE_MS: '2000',
      TESP_COMPUTE__BACKEND: 'pulsar',
      TESP_COMPUTE__PULSAR__RUNNERS: JSON.stringify([runner.entry('centre')]),
      TESP_COMPUTE__PULSAR__MAX_CONCURRENT_TASKS: capacity,
      TESP_COMPUTE__PULSAR__POLL_INTERVAL_MS: '200',
      TESP_COMPUTE__PULSAR__HEALTH_INTERVAL_MS: '500',
  });

  beforeAll(async () => {
    runner = new RunnerProcess(RunnerProcess.tempDataDir(), { TESP_COMPUTE__LOCAL__RUNTIME: 'docker' });
    await runner.start();
    dataDir = ServiceProcess.tempDataDir();
    // "front" serves the API only: the tasks are held by "worker-1" until it is killed, then by "worker-2".
    replicas = {
      front: new ServiceProcess(dataDir, env('front', '0')),
      'worker-1': new ServiceProcess(dataDir, env('worker-1', '10')),
    };
    await replicas.front.start();
    await replicas['worker-1'].start();
  });

  afterAll(async () => {
    await Promise.all(Object.values(replicas ?? {}).map((replica) => replica.stop()));
    await runner?.stop();
    runner?.cleanup();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('cancels through a replica that does not hold the task: the runner stops the job, no container is left', async () => {
    const id = await replicas.front.createTask({ executors: [{ image: 'alpine:latest', command: ['sleep', '600'] }] });
    await replicas.front.waitForExecutor(id, 0, 60_000);
    expect(holderOf(dataDir, id)).toBe('worker-1');
    expect((await replicas.front.post(`/tasks/${id}:cancel`, {})).status).toBe(200);
    const task = await replicas.front.waitFor(id, ['CANCELED'], 30_000);
    expect(containersOf(id)).toEqual([]);
    expect(task.logs.at(-1).system_logs.join('\n')).toMatch(/canceled: job .* on runner centre was stopped/);
  });

  it('finishes the job of a killed holder on the replica that takes the task over, without running it again', async () => {
    const id = await replicas.front.createTask({
      executors: [{ image: 'alpine:latest', command: ['sh', '-c', 'echo started; sleep 4; echo finished'] }],
    });
    await replicas.front.waitForExecutor(id, 0, 60_000);
    await replicas['worker-1'].stop('SIGKILL');
    replicas['worker-2'] = new ServiceProcess(dataDir, env('worker-2', '10'));
    await replicas['worker-2'].start();
    const task = await replicas.front.waitFor(id, undefined, 60_000);
    expect(task.state).toBe('COMPLETE');
    expect(task.logs).toHaveLength(1); // one attempt: the job was followed again, not run anew
    expect(task.logs[0].logs[0].stdout).toBe('started\nfinished\n');
    expect(task.logs[0].system_logs.join('\n')).toMatch(/taken over by worker-2 from worker-1 .*resumed: following job/);
    expect(holderOf(dataDir, id)).toBeUndefined();
  });
});

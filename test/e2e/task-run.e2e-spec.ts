// The service as users run it (dist/main.js, SQLite, local Docker backend), driven over HTTP.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { expectSchema } from '../support/openapi-validator';
import { containersOf, describeWithDocker, ServiceProcess, sleep } from './service-process';

interface HttpFixture {
  server: Server;
  port: number;
  hits: Map<string, number>;
  uploads: Map<string, Buffer>;
}

/** A local file server: /flaky fails twice with 503 then serves; PUT stores bodies; anything else is 404. */
async function startHttpFixture(): Promise<HttpFixture> {
  const hits = new Map<string, number>();
  const uploads = new Map<string, Buffer>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    const count = (hits.get(url) ?? 0) + 1;
    hits.set(url, count);
    if (req.method === 'PUT') {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        uploads.set(url, Buffer.concat(chunks));
        res.writeHead(201).end();
      });
      return;
    }
    if (url === '/flaky' && count <= 2) {
      res.writeHead(503, { 'content-type': 'text/plain' }).end('try again');
      return;
    }
    if (url === '/flaky') {
      const body = 'remote data\n';
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) }).end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not here');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return { server, port: typeof address === 'object' && address ? address.port : 0, hits, uploads };
}

describeWithDocker('tasks run end to end on the local Docker backend', () => {
  let service: ServiceProcess;
  let shared: string;
  let http: HttpFixture;

  beforeAll(async () => {
    shared = mkdtempSync(path.join(os.tmpdir(), 'tesp-e2e-files-'));
    http = await startHttpFixture();
    service = new ServiceProcess(ServiceProcess.tempDataDir(), {
      TESP_STORAGE__FILE__ALLOWED_DIRS: shared,
      TESP_STORAGE__HTTP__RETRY_BASE_MS: '50',
    });
    await service.start();
  });

  afterAll(async () => {
    await service?.stop();
    service?.cleanup();
    http?.server.close();
    rmSync(shared, { recursive: true, force: true });
  });

  it('runs the README md5sum example to COMPLETE with the executor stdout in the FULL view', async () => {
    const id = await service.createTask({
      name: 'md5sum example',
      inputs: [{ path: '/data/file1', content: 'hello tesp\n' }],
      executors: [{ image: 'alpine:latest', command: ['md5sum', '/data/file1'] }],
    });
    const task = await service.waitFor(id);
    const md5 = createHash('md5').update('hello tesp\n').digest('hex');
    expect(task.state).toBe('COMPLETE');
    expectSchema('tesTask', task);
    expect(task.logs[0].logs[0]).toMatchObject({ exit_code: 0, stdout: `${md5}  /data/file1\n` });
    expect(task.logs[0].start_time).toBeDefined();
    expect(task.logs[0].end_time).toBeDefined();
    expect((await service.get(`/tasks/${id}`)).json).toEqual({ id, state: 'COMPLETE' });
  });

  it('continues past a failing executor that has ignore_error and records every exit code', async () => {
    const id = await service.createTask({
      executors: [
        { image: 'alpine:latest', command: ['sh', '-c', 'echo one'] },
        { image: 'alpine:latest', command: ['sh', '-c', 'echo two >&2; exit 3'], ignore_error: true },
        { image: 'alpine:latest', command: ['sh', '-c', 'echo three'] },
      ],
    });
    const task = await service.waitFor(id);
    expect(task.state).toBe('COMPLETE');
    expect(task.logs[0].logs.map((l: any) => l.exit_code)).toEqual([0, 3, 0]);
    expect(task.logs[0].logs.map((l: any) => l.stdout)).toEqual(['one\n', '', 'three\n']);
    expect(task.logs[0].logs[1].stderr).toBe('two\n');
  });

  it('stops at a failing executor, ends EXECUTOR_ERROR and still uploads the outputs', async () => {
    const id = await service.createTask({
      outputs: [{ path: '/out/err.txt', url: `file://${shared}/failed/err.txt` }],
      executors: [
        { image: 'alpine:latest', command: ['sh', '-c', 'echo broken >&2; exit 5'], stderr: '/out/err.txt' },
        { image: 'alpine:latest', command: ['echo', 'never'] },
      ],
    });
    const task = await service.waitFor(id);
    expect(task.state).toBe('EXECUTOR_ERROR');
    expect(task.logs[0].logs).toHaveLength(1);
    expect(task.logs[0].logs[0].exit_code).toBe(5);
    expect(readFileSync(path.join(shared, 'failed/err.txt'), 'utf8')).toBe('broken\n');
    expect(task.logs[0].outputs).toEqual([{ url: `file://${shared}/failed/err.txt`, path: '/out/err.txt', size_bytes: '7' }]);
    expect(task.logs[0].metadata).toEqual({ 'sha256:/out/err.txt': createHash('sha256').update('broken\n').digest('hex') });
  });

  it('feeds stdin from a file and writes stdout and stderr to files', async () => {
    const id = await service.createTask({
      inputs: [{ path: '/in/data.txt', content: 'abc\nxyz\n' }],
      outputs: [
        { path: '/out/upper.txt', url: `file://${shared}/stdio/upper.txt` },
        { path: '/out/err.txt', url: `${shared}/stdio/err.txt` },
      ],
      executors: [
        { image: 'alpine:latest', command: ['tr', 'a-z', 'A-Z'], stdin: '/in/data.txt', stdout: '/out/upper.txt' },
        { image: 'alpine:latest', command: ['sh', '-c', 'echo to-stderr >&2'], stderr: '/out/err.txt' },
      ],
    });
    const task = await service.waitFor(id);
    expect(task.state).toBe('COMPLETE');
    expect(readFileSync(path.join(shared, 'stdio/upper.txt'), 'utf8')).toBe('ABC\nXYZ\n');
    expect(readFileSync(path.join(shared, 'stdio/err.txt'), 'utf8')).toBe('to-stderr\n');
    expect(task.logs[0].logs[0].stdout).toBe('ABC\nXYZ\n');
  });

  it('shares a volume between executors and honours workdir and env', async () => {
    const id = await service.createTask({
      volumes: ['/shared'],
      executors: [
        { image: 'alpine:latest', command: ['sh', '-c', 'echo "$GREETING" > note'], workdir: '/shared', env: { GREETING: 'hi from one' } },
        { image: 'alpine:latest', command: ['cat', '/shared/note'] },
      ],
    });
    const task = await service.waitFor(id);
    expect(task.state).toBe('COMPLETE');
    expect(task.logs[0].logs[1].stdout).toBe('hi from one\n');
  });

  it('accepts a 200 KiB content input', async () => {
    const content = 'x'.repeat(200 * 1024);
    const id = await service.createTask({
      inputs: [{ path: '/data/big.txt', content }],
      executors: [{ image: 'alpine:latest', command: ['wc', '-c', '/data/big.txt'] }],
    });
    const task = await service.waitFor(id);
    expect(task.state).toBe('COMPLETE');
    expect(task.logs[0].logs[0].stdout.trim()).toBe(`${200 * 1024} /data/big.txt`);
    expect(task.inputs[0].content).toHaveLength(200 * 1024);
  });

  it('uploads a DIRECTORY output and a glob output with path_prefix', async () => {
    const script = 'mkdir -p /work/out/sub && echo 1 > /work/out/a.txt && echo 22 > /work/out/sub/b.txt && echo r > /work/res1.csv && echo rr > /work/res2.csv && echo no > /work/other.txt';
    const id = await service.createTask({
      outputs: [
        { path: '/work/out', url: `file://${shared}/dir-out`, type: 'DIRECTORY' },
        { path: '/work/*.csv', path_prefix: '/work', url: `file://${shared}/glob-out` },
        { path: '/work/*.missing', path_prefix: '/work', url: `file://${shared}/none` },
      ],
      executors: [{ image: 'alpine:latest', command: ['sh', '-c', script] }],
    });
    const task = await service.waitFor(id);
    expect(task.state).toBe('COMPLETE');
    expect(readFileSync(path.join(shared, 'dir-out/a.txt'), 'utf8')).toBe('1\n');
    expect(readFileSync(path.join(shared, 'dir-out/sub/b.txt'), 'utf8')).toBe('22\n');
    expect(readFileSync(path.join(shared, 'glob-out/res1.csv'), 'utf8')).toBe('r\n');
    expect(readFileSync(path.join(shared, 'glob-out/res2.csv'), 'utf8')).toBe('rr\n');
    expect(existsSync(path.join(shared, 'glob-out/other.txt'))).toBe(false);
    expectSchema('tesTask', task);
    const outputs = [...task.logs[0].outputs].sort((a: any, b: any) => a.path.localeCompare(b.path));
    expect(outputs).toEqual([
      { url: `file://${shared}/dir-out/a.txt`, path: '/work/out/a.txt', size_bytes: '2' },
      { url: `file://${shared}/dir-out/sub/b.txt`, path: '/work/out/sub/b.txt', size_bytes: '3' },
      { url: `file://${shared}/glob-out/res1.csv`, path: '/work/res1.csv', size_bytes: '2' },
      { url: `file://${shared}/glob-out/res2.csv`, path: '/work/res2.csv', size_bytes: '3' },
    ]);
  });

  it('retries an HTTP input that fails twice and uploads an output by PUT', async () => {
    const base = `http://127.0.0.1:${http.port}`;
    const id = await service.createTask({
      inputs: [{ path: '/data/remote.txt', url: `${base}/flaky` }],
      outputs: [{ path: '/data/copy.txt', url: `${base}/upload/copy.txt` }],
      executors: [{ image: 'alpine:latest', command: ['sh', '-c', 'cat /data/remote.txt; cp /data/remote.txt /data/copy.txt'] }],
    });
    const task = await service.waitFor(id);
    expect(task.state).toBe('COMPLETE');
    expect(task.logs[0].logs[0].stdout).toBe('remote data\n');
    expect(http.hits.get('/flaky')).toBeGreaterThanOrEqual(3);
    expect(http.uploads.get('/upload/copy.txt')?.toString()).toBe('remote data\n');
  });

  it('ends SYSTEM_ERROR with the reason in system_logs when an input cannot be staged', async () => {
    const id = await service.createTask({
      inputs: [{ path: '/data/missing.txt', url: `http://tes:s3cret@127.0.0.1:${http.port}/missing` }],
      executors: [{ image: 'alpine:latest', command: ['cat', '/data/missing.txt'] }],
    });
    const task = await service.waitFor(id);
    expect(task.state).toBe('SYSTEM_ERROR');
    const systemLogs = task.logs[0].system_logs.join('\n');
    expect(systemLogs).toMatch(/404/);
    expect(JSON.stringify(task)).not.toContain('s3cret');
    expect(service.output).not.toContain('s3cret');
  });

  it('cancels a running sleep 600: CANCELING at once, CANCELED within 5 s with the container gone and the executor log closed', async () => {
    const id = await service.createTask({ executors: [{ image: 'alpine:latest', command: ['sleep', '600'] }] });
    await service.waitForExecutor(id);
    const cancel = await service.post(`/tasks/${id}:cancel`, undefined);
    expect(cancel).toEqual({ status: 200, json: {} });
    expect(['CANCELING', 'CANCELED']).toContain((await service.get(`/tasks/${id}`)).json.state);
    const task = await service.waitFor(id, ['CANCELED', 'COMPLETE', 'EXECUTOR_ERROR', 'SYSTEM_ERROR'], 5000);
    expect(task.state).toBe('CANCELED');
    expect(containersOf(id)).toEqual([]);
    // sleep as PID 1 ignores SIGTERM: the stop timeout passes, then SIGKILL (128 + 9).
    expect(task.logs[0].logs[0]).toMatchObject({ exit_code: 137, end_time: expect.any(String) });
    expect(task.logs[0].system_logs).toEqual(['cancel requested: stopping its work', 'canceled: its executors were stopped and removed']);
  });
});

describeWithDocker('the concurrency limit', () => {
  let service: ServiceProcess;

  beforeAll(async () => {
    service = new ServiceProcess(ServiceProcess.tempDataDir(), { TESP_COMPUTE__LOCAL__MAX_CONCURRENT_TASKS: '1' });
    await service.start();
  });

  afterAll(async () => {
    await service?.stop();
    service?.cleanup();
  });

  it('keeps a second task QUEUED with a system_logs line saying why, then runs it', async () => {
    const first = await service.createTask({ executors: [{ image: 'alpine:latest', command: ['sleep', '2'] }] });
    await service.waitFor(first, ['RUNNING']);
    const second = await service.createTask({ executors: [{ image: 'alpine:latest', command: ['echo', 'second'] }] });
    await sleep(600);
    const waiting = (await service.get(`/tasks/${second}?view=FULL`)).json;
    expect(waiting.state).toBe('QUEUED');
    expect(waiting.logs[0].system_logs.join('\n')).toMatch(/max_concurrent_tasks/);
    expect((await service.waitFor(second)).state).toBe('COMPLETE');
    expect((await service.waitFor(first)).state).toBe('COMPLETE');
  });
});

describeWithDocker('a restart of tesp while tasks run', () => {
  let service: ServiceProcess;

  beforeAll(async () => {
    service = new ServiceProcess(ServiceProcess.tempDataDir());
    await service.start();
  });

  afterAll(async () => {
    await service?.stop();
    service?.cleanup();
  });

  it('after SIGKILL adopts a running container, and runs a task whose containers are gone again as a new attempt', async () => {
    const survivor = await service.createTask({
      executors: [
        { image: 'alpine:latest', command: ['sh', '-c', 'echo started; sleep 4; echo survived'] },
        { image: 'alpine:latest', command: ['echo', 'after'] },
      ],
    });
    const lost = await service.createTask({ executors: [{ image: 'alpine:latest', command: ['sh', '-c', 'sleep 2; echo again'] }] });
    await service.waitFor(survivor, ['RUNNING']);
    await service.waitFor(lost, ['RUNNING']);
    await service.stop('SIGKILL');

    for (const name of containersOf(lost)) execFileSync('docker', ['rm', '-f', name], { stdio: 'ignore' });
    await service.start();

    // The new process has another holder id: it takes the tasks over once the dead one's leases expire.
    const adopted = await service.waitFor(survivor);
    expect(adopted.state).toBe('COMPLETE');
    expect(adopted.logs).toHaveLength(1);
    expect(adopted.logs[0].logs.map((l: any) => l.stdout)).toEqual(['started\nsurvived\n', 'after\n']);
    expect(adopted.logs[0].logs.map((l: any) => l.exit_code)).toEqual([0, 0]);
    expect(adopted.logs[0].system_logs.join('\n')).toMatch(/taken over by .* after its lease ended; resumed: adopted 1 executor container\(s\), 1 still running/);

    const again = await service.waitFor(lost);
    expect(again.state).toBe('COMPLETE');
    expect(again.logs).toHaveLength(2);
    expect(again.logs[0].system_logs.join('\n')).toMatch(/attempt 1 was lost: .*its executor containers are gone/);
    expect(again.logs[1].logs[0].stdout).toBe('again\n');
    expect(containersOf(survivor)).toEqual([]);
  });

  it('after SIGTERM exits cleanly, leaves the running container, and the next start finishes the task', async () => {
    const id = await service.createTask({ executors: [{ image: 'alpine:latest', command: ['sh', '-c', 'sleep 3; echo graceful'] }] });
    await service.waitFor(id, ['RUNNING']);
    const exited = service.exitCode();
    await service.stop('SIGTERM');
    expect(await exited).toBe(0);
    expect(containersOf(id)).toHaveLength(1);
    await service.start();
    const task = await service.waitFor(id);
    expect(task.state).toBe('COMPLETE');
    expect(task.logs[0].logs[0].stdout).toBe('graceful\n');
  });
});

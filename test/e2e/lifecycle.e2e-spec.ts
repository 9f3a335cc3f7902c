// The lifecycle in-process with the process runtime (no Docker needed): tasks run through the API, and a task
// left active without a run is settled by the orphan sweep instead of staying RUNNING forever.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { InProcessApp, startInProcessApp } from '../support/in-process-app';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { describeWhen, RGW, rgwAvailable, VSFTPD, vsftpdAvailable } from '../support/service-check';
import { TASK_REPOSITORY, TaskRepository } from '../../src/persistence/task-repository';
import { TesState } from '../../src/domain/tes-task';
import { sleep } from './service-process';

describe('task lifecycle with the process runtime', () => {
  let server: InProcessApp;
  let base: string;

  beforeAll(async () => {
    server = await startInProcessApp({
      'scheduler.poll_interval_ms': 50,
      'compute.local.runtime': 'process',
    });
    base = `${server.root}/ga4gh/tes/v1`;
  });

  afterAll(async () => {
    await server?.close();
  });

  async function waitUntil(id: string, done: (task: any) => boolean, timeoutMs = 20_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    let task: any;
    while (Date.now() < deadline) {
      task = await (await fetch(`${base}/tasks/${id}?view=FULL`)).json();
      if (done(task)) return task;
      await sleep(50);
    }
    throw new Error(`task ${id} stayed ${task?.state}: ${JSON.stringify(task)}`);
  }

  const waitForState = (id: string, states: string[], timeoutMs?: number) => waitUntil(id, (task) => states.includes(task.state), timeoutMs);

  it('runs a task through the API to COMPLETE', async () => {
    const res = await fetch(`${base}/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ executors: [{ image: 'ignored', command: ['echo', 'from a process'] }] }),
    });
    const { id } = (await res.json()) as { id: string };
    const task = await waitForState(id, ['COMPLETE', 'EXECUTOR_ERROR', 'SYSTEM_ERROR']);
    expect(task.state).toBe('COMPLETE');
    expect(task.logs[0].logs[0]).toMatchObject({ exit_code: 0, stdout: 'from a process\n' });
  });

  it('cancels a running sleep 600: CANCELED within 5 s, the SIGTERM in its executor log', async () => {
    const created = await fetch(`${base}/tasks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ executors: [{ image: 'x', command: ['sleep', '600'] }] }) });
    const { id } = (await created.json()) as { id: string };
    await waitUntil(id, (task) => Boolean(task.logs?.[0]?.logs?.[0]?.start_time));
    const cancel = await fetch(`${base}/tasks/${id}:cancel`, { method: 'POST' });
    expect([cancel.status, await cancel.json()]).toEqual([200, {}]);
    const task = await waitForState(id, ['CANCELED', 'COMPLETE', 'EXECUTOR_ERROR', 'SYSTEM_ERROR'], 5000);
    expect(task.state).toBe('CANCELED');
    expect(task.logs[0].logs[0]).toMatchObject({ exit_code: 143, end_time: expect.any(String) });
  });

  it('ends a task with an s3:// input SYSTEM_ERROR at staging when S3 is not configured, naming the settings to set', async () => {
    const res = await fetch(`${base}/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: [{ url: 's3://my-object-store/file-1', path: '/data/file1', type: 'FILE' }], executors: [{ image: 'alpine', command: ['cat', '/data/file1'] }] }),
    });
    expect(res.status).toBe(200);
    const task = await waitForState(((await res.json()) as { id: string }).id, ['COMPLETE', 'EXECUTOR_ERROR', 'SYSTEM_ERROR']);
    expect(task.state).toBe('SYSTEM_ERROR');
    expect(task.logs[0].system_logs.join('\n')).toMatch(/staging inputs\[0\] \(s3:\/\/my-object-store\/file-1\) to \/data\/file1 failed: .*the scheme "s3:" is not configured on this server \(set storage\.s3\.enabled with storage\.s3\.endpoint/);
    expect(task.logs[0].logs).toEqual([]);
  });

  /** A task claimed by a holder that then died, optionally after it had started its executors. */
  async function heldByDeadHolder(repo: TaskRepository, command: string[], running: boolean): Promise<string> {
    const id = `orphan-${running ? 'running' : 'staging'}-${Date.now()}`;
    // Queued in the same store commit as the insert, so the live scheduler cannot claim the task first.
    const inserted = repo.insert({ id, state: TesState.QUEUED, creation_time: new Date().toISOString(), executors: [{ image: 'x', command }], logs: [] }, '');
    const claimed = repo.claimNext('dead-holder', running ? 400 : 1);
    await inserted;
    const task = await claimed;
    expect(task?.id).toBe(id);
    if (running) {
      const moved = await repo.patch(id, { from: [TesState.INITIALIZING], to: TesState.RUNNING, attempt: 1, lease_token: task!.control.lease!.token, ops: [] });
      expect(moved.applied).toBe(true);
    }
    return id;
  }

  it('takes over a task whose holder died while staging and runs it from its inputs', async () => {
    const id = await heldByDeadHolder(server.app.get<TaskRepository>(TASK_REPOSITORY), ['echo', 'taken over'], false);
    const task = await waitForState(id, ['COMPLETE', 'EXECUTOR_ERROR', 'SYSTEM_ERROR']);
    expect(task.state).toBe('COMPLETE');
    expect(task.logs).toHaveLength(1);
    expect(task.logs[0].logs[0].stdout).toBe('taken over\n');
    expect(task.logs[0].system_logs.join('\n')).toMatch(/taken over by \S+ from dead-holder after its lease ended; resumed: no executor had started; staging the inputs again/);
  });

  it('runs a task again as a new attempt when the holder that ran it died and its processes cannot be adopted', async () => {
    const id = await heldByDeadHolder(server.app.get<TaskRepository>(TASK_REPOSITORY), ['echo', 'second attempt'], true);
    const task = await waitForState(id, ['COMPLETE', 'EXECUTOR_ERROR', 'SYSTEM_ERROR']);
    expect(task.state).toBe('COMPLETE');
    expect(task.logs).toHaveLength(2);
    expect(task.logs[0].system_logs.join('\n')).toMatch(/attempt 1 was lost: taken over by \S+ from dead-holder after its lease ended; the process runtime cannot adopt executors another process started/);
    expect(task.logs[0].end_time).toBeDefined();
    expect(task.logs[1].system_logs[0]).toBe('attempt 2 of at most 3: the task runs again from the start');
    expect(task.logs[1].logs[0]).toMatchObject({ exit_code: 0, stdout: 'second attempt\n' });
  });
});

describe('task lifecycle when no attempt is left', () => {
  let server: InProcessApp;

  beforeAll(async () => {
    server = await startInProcessApp({ 'scheduler.poll_interval_ms': 50, 'scheduler.max_attempts': 1, 'compute.local.runtime': 'process' });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('ends a lost task SYSTEM_ERROR with the reason', async () => {
    const repo = server.app.get<TaskRepository>(TASK_REPOSITORY);
    const id = 'orphan-last-' + Date.now();
    const inserted = repo.insert({ id, state: TesState.QUEUED, creation_time: new Date().toISOString(), executors: [{ image: 'x', command: ['true'] }], logs: [] }, '');
    const claimed = repo.claimNext('dead-holder', 400);
    await inserted;
    const task = await claimed;
    await repo.patch(id, { from: [TesState.INITIALIZING], to: TesState.RUNNING, attempt: 1, lease_token: task!.control.lease!.token, ops: [] });
    let view: any;
    for (let i = 0; i < 200 && view?.state !== 'SYSTEM_ERROR'; i++) {
      await sleep(50);
      view = await (await fetch(`${server.root}/ga4gh/tes/v1/tasks/${id}?view=FULL`)).json();
    }
    expect(view.state).toBe('SYSTEM_ERROR');
    expect(view.logs).toHaveLength(1);
    expect(view.logs[0].system_logs.join('\n')).toMatch(/attempt 1 was lost: .*cannot adopt executors another process started; no attempt is left \(scheduler\.max_attempts = 1\)/);
  });
});

describeWhen('transfer-only tasks between FTP and files', vsftpdAvailable(), `no FTP server answers on 127.0.0.1:${VSFTPD.port} (run docker/start-vsftpd.sh)`, () => {
  let server: InProcessApp;
  let base: string;
  let allowed: string;
  let ftpDir: string;
  let ftpUrl: string;

  beforeAll(async () => {
    allowed = mkdtempSync(path.join(os.tmpdir(), 'tesp-transfer-'));
    const name = `transfer-${process.pid}-${Date.now()}`;
    ftpDir = path.join(VSFTPD.dir, 'home-tes', 'data', name);
    mkdirSync(path.join(ftpDir, 'in/sub'), { recursive: true });
    writeFileSync(path.join(ftpDir, 'in/one.txt'), 'one');
    writeFileSync(path.join(ftpDir, 'in/sub/two.txt'), 'two!');
    const uid = Number(execFileSync('id', ['-u', VSFTPD.user], { encoding: 'utf8' }));
    chownSync(ftpDir, uid, uid);
    ftpUrl = `ftp://127.0.0.1:${VSFTPD.port}/data/${name}`;
    server = await startInProcessApp({
      'scheduler.poll_interval_ms': 50,
      'compute.local.runtime': 'process',
      'storage.file.allowed_dirs': [allowed],
      'storage.ftp.credentials': [`127.0.0.1:${VSFTPD.port}=${VSFTPD.user}:${VSFTPD.password}`],
      'storage.ftp.retry_base_ms': 10,
    });
    base = `${server.root}/ga4gh/tes/v1`;
  });

  afterAll(async () => {
    await server?.close();
    rmSync(allowed, { recursive: true, force: true });
    rmSync(ftpDir, { recursive: true, force: true });
  });

  async function run(task: unknown): Promise<any> {
    const created = await fetch(`${base}/tasks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(task) });
    expect(created.status).toBe(200);
    const { id } = (await created.json()) as { id: string };
    for (let i = 0; i < 400; i++) {
      const view = (await (await fetch(`${base}/tasks/${id}?view=FULL`)).json()) as any;
      if (['COMPLETE', 'EXECUTOR_ERROR', 'SYSTEM_ERROR', 'CANCELED'].includes(view.state)) return view;
      await sleep(50);
    }
    throw new Error(`task ${id} did not finish`);
  }

  it('moves a DIRECTORY from FTP to a file location and back, without executors', async () => {
    const down = await run({
      inputs: [{ path: '/transfer/in', url: `${ftpUrl}/in`, type: 'DIRECTORY' }],
      outputs: [{ path: '/transfer/in', url: `file://${allowed}/copy`, type: 'DIRECTORY' }],
      executors: [],
    });
    expect(down.state).toBe('COMPLETE');
    expect(readFileSync(path.join(allowed, 'copy/sub/two.txt'), 'utf8')).toBe('two!');
    expect(down.logs[0].outputs.map((o: any) => o.size_bytes).sort()).toEqual(['3', '4']);

    const up = await run({
      inputs: [{ path: '/transfer/out', url: `${allowed}/copy`, type: 'DIRECTORY' }],
      outputs: [{ path: '/transfer/out', url: `${ftpUrl}/back`, type: 'DIRECTORY' }],
      executors: [],
    });
    expect(up.state).toBe('COMPLETE');
    expect(readFileSync(path.join(ftpDir, 'back/sub/two.txt'), 'utf8')).toBe('two!');
  });

  it('ends SYSTEM_ERROR with a clear reason and no secret when FTP credentials are wrong', async () => {
    const task = await run({
      inputs: [{ path: '/t/x', url: `ftp://tes:not-the-password@127.0.0.1:${VSFTPD.port}/data/whatever.txt` }],
      outputs: [{ path: '/t/x', url: `${allowed}/x` }],
      executors: [],
    });
    expect(task.state).toBe('SYSTEM_ERROR');
    const reason = task.logs[0].system_logs.join('\n');
    expect(reason).toMatch(/login as "tes" refused/);
    expect(JSON.stringify(task)).not.toContain('not-the-password');
  });
});

describeWhen('transfer-only tasks between S3 and files', rgwAvailable(), `no S3 server answers on ${RGW.endpoint} (run docker/start-ceph-rgw.sh)`, () => {
  let server: InProcessApp;
  let allowed: string;
  let bucket: string;

  beforeAll(async () => {
    allowed = mkdtempSync(path.join(os.tmpdir(), 'tesp-s3-transfer-'));
    const client = new S3Client({ endpoint: RGW.endpoint, region: RGW.region, forcePathStyle: true, credentials: { accessKeyId: RGW.accessKeyId, secretAccessKey: RGW.secretAccessKey } });
    bucket = `tesp-transfer-${process.pid}-${Date.now()}`;
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'in/data.txt', Body: 'from s3' }));
    client.destroy();
    server = await startInProcessApp({
      'scheduler.poll_interval_ms': 50,
      'compute.local.runtime': 'process',
      'storage.file.allowed_dirs': [allowed],
      'storage.s3.enabled': true,
      'storage.s3.endpoint': RGW.endpoint,
      'storage.s3.access_key_id': RGW.accessKeyId,
      'storage.s3.secret_access_key': RGW.secretAccessKey,
    });
  });

  afterAll(async () => {
    await server?.close();
    rmSync(allowed, { recursive: true, force: true });
  });

  it('copies an S3 object to a file location and the file back to S3 with its checksum', async () => {
    const base = `${server.root}/ga4gh/tes/v1`;
    const created = await fetch(`${base}/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        inputs: [{ path: '/t/data.txt', url: `s3://${bucket}/in/data.txt` }],
        outputs: [
          { path: '/t/data.txt', url: `${allowed}/data.txt` },
          { path: '/t/data.txt', url: `s3://${bucket}/out/copy.txt` },
        ],
        executors: [],
      }),
    });
    const { id } = (await created.json()) as { id: string };
    let task: any;
    for (let i = 0; i < 400; i++) {
      task = await (await fetch(`${base}/tasks/${id}?view=FULL`)).json();
      if (['COMPLETE', 'SYSTEM_ERROR'].includes(task.state)) break;
      await sleep(50);
    }
    expect(task.state).toBe('COMPLETE');
    expect(readFileSync(path.join(allowed, 'data.txt'), 'utf8')).toBe('from s3');
    expect(task.logs[0].outputs.map((o: any) => o.url).sort()).toEqual([`${allowed}/data.txt`, `s3://${bucket}/out/copy.txt`].sort());
    expect(task.logs[0].metadata['sha256:/t/data.txt']).toBe(createHash('sha256').update('from s3').digest('hex'));
  });
});

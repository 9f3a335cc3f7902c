// The API dispatching to `tesp runner` processes over Pulsar's message-queue mode, through the real RabbitMQ on
// 127.0.0.1:5672 (reached through a TCP proxy, so the broker can be taken away and given back): two runners on two
// manager queues with no HTTP port, staging through the API's staging URLs, an HTTP file server as the tasks'
// storage, and the local Docker engine. Where the test itself plays a runner (to send status updates twice and out
// of order), it speaks the protocol of the pulsar-protocol reference §12 with amqplib, as Pulsar does.
import * as amqp from 'amqplib';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { relayKey } from '../../src/compute/pulsar/amqp-setup-message';
import { pulsarQueues } from '../../src/engine/pulsar-queues';
import { RunnerProcess } from '../runner/runner-process';
import { HttpFileServer, startHttpFileServer } from '../support/http-file-server';
import { describeWhen, tcpOpen } from '../support/service-check';
import { TcpProxy } from '../support/tcp-proxy';
import { containersOf, dockerAvailable, freePort, ServiceProcess, sleep } from './service-process';

const BROKER_PORT = 5672;
const run = Date.now().toString(36);
const MANAGER_A = `ta${run}`;
const MANAGER_B = `tb${run}`;
const MANAGER_C = `tc${run}`;
const MANAGER_D = `td${run}`;

function jobDirs(runner: RunnerProcess): string[] {
  try {
    return readdirSync(runner.stagingDir);
  } catch {
    return [];
  }
}

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

jest.setTimeout(180_000);

describeWhen('dispatch to tesp runners over AMQP (RabbitMQ)', tcpOpen(BROKER_PORT) && dockerAvailable(), `no RabbitMQ on 127.0.0.1:${BROKER_PORT} or no Docker engine`, () => {
  let proxy: TcpProxy;
  let files: HttpFileServer;
  let filesRoot: string;
  let runnerA: RunnerProcess;
  let runnerB: RunnerProcess;
  let api: ServiceProcess;
  let broker: amqp.ChannelModel;
  let channel: amqp.Channel;
  const brokerUrl = () => `amqp://guest:guest@127.0.0.1:${proxy.port}/`;

  beforeAll(async () => {
    proxy = new TcpProxy(BROKER_PORT);
    await proxy.start();
    broker = await amqp.connect(`amqp://guest:guest@127.0.0.1:${BROKER_PORT}/`);
    channel = await broker.createChannel();
    filesRoot = mkdtempSync(path.join(os.tmpdir(), 'tesp-amqp-files-'));
    mkdirSync(path.join(filesRoot, 'in', 'dir', 'sub'), { recursive: true });
    writeFileSync(path.join(filesRoot, 'in', 'remote.txt'), 'remote input\n');
    writeFileSync(path.join(filesRoot, 'in', 'dir', 'a.txt'), 'a\n');
    writeFileSync(path.join(filesRoot, 'in', 'dir', 'sub', 'b.txt'), 'b\n');
    files = await startHttpFileServer(filesRoot);
    const runnerEnv = (manager: string, runtime: string) => ({
      TESP_COMPUTE__LOCAL__RUNTIME: runtime,
      TESP_RUNNER__AMQP__URL: brokerUrl(),
      TESP_RUNNER__AMQP__MANAGER: manager,
      TESP_RUNNER__DIRECT_STAGING: 'false',
    });
    runnerA = new RunnerProcess(RunnerProcess.tempDataDir(), runnerEnv(MANAGER_A, 'docker'));
    runnerB = new RunnerProcess(RunnerProcess.tempDataDir(), runnerEnv(MANAGER_B, 'process'));
    await Promise.all([runnerA.start(), runnerB.start()]);
    api = new ServiceProcess(ServiceProcess.tempDataDir(), {
      TESP_COMPUTE__BACKEND: 'pulsar',
      TESP_COMPUTE__PULSAR__RUNNERS: JSON.stringify([
        `a=${brokerUrl()}?manager=${MANAGER_A}`,
        `b=${brokerUrl()}?manager=${MANAGER_B}&runtime=process`,
        `c=${brokerUrl()}?manager=${MANAGER_C}&runtime=process`,
      ]),
      TESP_COMPUTE__PULSAR__HEALTH_INTERVAL_MS: '300',
      TESP_COMPUTE__PULSAR__STAGING_SECRET: 'amqp-test-secret',
      TESP_COMPUTE__PULSAR__AMQP_STATUS_INTERVAL_MS: '5000',
      TESP_STORAGE__FILE__ALLOWED_DIRS: JSON.stringify([filesRoot]),
    });
    await api.start();
  });

  afterAll(async () => {
    await api?.stop();
    await Promise.all([runnerA?.stop(), runnerB?.stop()]);
    await files?.close();
    await proxy?.stop();
    for (const manager of [MANAGER_A, MANAGER_B, MANAGER_C, MANAGER_D]) {
      for (const queue of Object.values(pulsarQueues(manager))) await channel?.deleteQueue(queue).catch(() => undefined);
    }
    await broker?.close().catch(() => undefined);
    for (const p of [api, runnerA, runnerB]) p?.cleanup();
    rmSync(filesRoot, { recursive: true, force: true });
  });

  it('runs three executors on a runner with no HTTP port: content and HTTP inputs, an HTTP output, per-executor logs', async () => {
    expect(runnerA.port).toBe(0);
    const id = await api.createTask({
      resources: { backend_parameters: { runner: 'a' } },
      inputs: [
        { path: '/in/content.txt', content: 'from content\n' },
        { path: '/in/remote.txt', url: `${files.base}/in/remote.txt` },
      ],
      outputs: [{ path: '/out/result.txt', url: `${files.base}/out/amqp-result.txt` }],
      volumes: ['/out'],
      executors: [
        { image: 'alpine:latest', command: ['sh', '-c', 'cat /in/content.txt /in/remote.txt > /out/result.txt; echo first'] },
        { image: 'alpine:latest', command: ['sh', '-c', 'echo "$GREETING" >> /out/result.txt; echo to-stderr >&2'], env: { GREETING: 'hello $HOME' } },
        { image: 'alpine:latest', command: ['sh', '-c', 'wc -l < /out/result.txt'] },
      ],
    });
    const task = await api.waitFor(id, undefined, 90_000);
    expect(task.state).toBe('COMPLETE');
    const expected = 'from content\nremote input\nhello $HOME\n';
    expect(readFileSync(path.join(filesRoot, 'out', 'amqp-result.txt'), 'utf8')).toBe(expected);
    const log = task.logs.at(-1);
    expect(log.logs.map((l: any) => l.exit_code)).toEqual([0, 0, 0]);
    expect(log.logs[0].stdout).toBe('first\n');
    expect(log.logs[1].stderr).toBe('to-stderr\n');
    expect(log.logs[2].stdout.trim()).toBe('3');
    expect(log.outputs).toEqual([{ url: `${files.base}/out/amqp-result.txt`, path: '/out/result.txt', size_bytes: String(expected.length) }]);
    expect(JSON.stringify(task)).not.toContain('amqp-test-secret');
    // The staging URLs' key and the broker's password appear in no log line and no answer.
    const key = relayKey('amqp-test-secret', id, 1);
    for (const text of [api.output, runnerA.output, JSON.stringify(task), JSON.stringify((await api.get('/service-info')).json)]) {
      expect(text).not.toContain(key);
      expect(text).not.toContain('guest:guest');
    }
    // The end is stored: the runner was asked to remove the job's directory.
    await until('the job directory to be cleaned', () => jobDirs(runnerA).length === 0);
  });

  it('routes a task to each runner by its manager queue, a directory input and a directory output included', async () => {
    const id = await api.createTask({
      resources: { backend_parameters: { runner: 'b' } },
      // A directory on the API's host: the runner fetches each of its files from the staging URLs.
      inputs: [{ path: '/in/dir', url: `file://${filesRoot}/in/dir`, type: 'DIRECTORY' }],
      outputs: [{ path: '/out', url: `${files.base}/out/copied/`, type: 'DIRECTORY' }],
      executors: [{ image: 'none', command: ['sh', '-c', 'mkdir -p "$TESP_TASK_ROOT/out" && cp -r "$TESP_TASK_ROOT/in/dir/." "$TESP_TASK_ROOT/out/"'] }],
    });
    const task = await api.waitFor(id, undefined, 60_000);
    expect(task.state).toBe('COMPLETE');
    expect(readFileSync(path.join(filesRoot, 'out', 'copied', 'a.txt'), 'utf8')).toBe('a\n');
    expect(readFileSync(path.join(filesRoot, 'out', 'copied', 'sub', 'b.txt'), 'utf8')).toBe('b\n');
    expect(runnerB.output).toContain(`${id}-1`);
    expect(runnerA.output).not.toContain(id);
  });

  const sleepTask = (runner: string, seconds: number, out: string) => ({
    resources: { backend_parameters: { runner } },
    outputs: [{ path: '/out/done.txt', url: `${files.base}/out/${out}` }],
    executors: [{ image: 'none', command: ['sh', '-c', `sleep ${seconds}; mkdir -p "$TESP_TASK_ROOT/out"; echo done > "$TESP_TASK_ROOT/out/done.txt"; echo finished`] }],
  });

  it('loses no update while the broker is away during a running task: it completes once the broker is back', async () => {
    const id = await api.createTask(sleepTask('b', 3, 'broker-away.txt'));
    await api.waitFor(id, ['RUNNING'], 30_000);
    await proxy.cut();
    // The job ends while neither side reaches the broker; its final status waits in the runner.
    await sleep(5000);
    expect((await api.get(`/tasks/${id}`)).json.state).toBe('RUNNING');
    await proxy.start();
    const task = await api.waitFor(id, undefined, 60_000).catch((err) => {
      console.log(api.output.slice(-3000), runnerB.output.slice(-4000));
      throw err;
    });
    expect(task.state).toBe('COMPLETE');
    expect(task.logs.at(-1).logs[0].stdout).toBe('finished\n');
    expect(readFileSync(path.join(filesRoot, 'out', 'broker-away.txt'), 'utf8')).toBe('done\n');
    expect(api.output).toContain('connected to the broker again');
  });

  it('completes a task while tesp is killed with SIGKILL and started again', async () => {
    const id = await api.createTask(sleepTask('b', 3, 'tesp-killed.txt'));
    await api.waitFor(id, ['RUNNING'], 30_000);
    await api.stop('SIGKILL');
    await sleep(4000); // the job ends meanwhile: its outputs wait in the runner (retried), its status in the queue
    await api.start();
    const task = await api.waitFor(id, undefined, 60_000);
    expect(task.state).toBe('COMPLETE');
    expect(readFileSync(path.join(filesRoot, 'out', 'tesp-killed.txt'), 'utf8')).toBe('done\n');
    expect(task.logs).toHaveLength(1); // the same attempt, followed on
  });

  it('completes a task while its runner is killed with SIGKILL and started again', async () => {
    const id = await api.createTask(sleepTask('b', 3, 'runner-killed.txt'));
    await api.waitFor(id, ['RUNNING'], 30_000);
    await runnerB.stop('SIGKILL');
    await sleep(1000);
    await runnerB.start();
    const task = await api.waitFor(id, undefined, 60_000);
    expect(task.state).toBe('COMPLETE');
    expect(readFileSync(path.join(filesRoot, 'out', 'runner-killed.txt'), 'utf8')).toBe('done\n');
    expect(task.logs).toHaveLength(1);
  });

  it('cancels a running task with a kill message: CANCELED, and no container left', async () => {
    const id = await api.createTask({ resources: { backend_parameters: { runner: 'a' } }, executors: [{ image: 'alpine:latest', command: ['sleep', '600'] }] });
    await until('the container to run', () => containersOf(id).length === 1, 60_000);
    expect((await api.post(`/tasks/${id}:cancel`, {})).status).toBe(200);
    const task = await api.waitFor(id, ['CANCELED'], 30_000);
    await until('the container to be gone', () => containersOf(id).length === 0, 30_000);
    expect(task.logs.at(-1).system_logs.join('\n')).toMatch(/canceled: a kill message for job .* on runner a was sent to pulsar_ta\w+__kill/);
    await until('the job directory to be cleaned', () => jobDirs(runnerA).length === 0);
  });

  it('drops a malformed message on every queue with a log line, and both sides go on working', async () => {
    const a = pulsarQueues(MANAGER_A);
    const publish = (queue: string, body: string, contentType?: string) => channel.publish('pulsar', queue, Buffer.from(body), { contentType, persistent: true });
    for (const queue of [a.setup, a.kill, a.status, a.clean, a.statusUpdate]) {
      publish(queue, 'not json at all', 'application/octet-stream');
      publish(queue, '{"half": ', 'application/json');
      publish(queue, '{"no_job_id": true}', 'application/json');
    }
    publish(a.statusUpdate, JSON.stringify({ job_id: 'nosuchtask-1', status: 'complete', complete: 'true' }), 'application/json');
    publish(a.setup, JSON.stringify({ job_id: '..', command_line: 'true', setup_params: { job_id: '..' } }), 'application/json');
    const id = await api.createTask({
      resources: { backend_parameters: { runner: 'a' } },
      outputs: [{ path: '/out/done.txt', url: `${files.base}/out/after-poison.txt` }],
      volumes: ['/out'],
      executors: [{ image: 'alpine:latest', command: ['sh', '-c', 'echo done > /out/done.txt'] }],
    });
    expect((await api.waitFor(id, undefined, 60_000)).state).toBe('COMPLETE');
    await until('the queues to be drained', async () => {
      for (const queue of [a.setup, a.kill, a.status, a.clean, a.statusUpdate]) if ((await channel.checkQueue(queue)).messageCount > 0) return false;
      return true;
    });
    expect(api.output).toContain('dropped a malformed status update');
    expect(api.output).toContain('a status update of an unknown job: dropped');
    for (const problem of ['is not application/json', 'the body is not JSON']) expect(runnerA.output).toContain(problem);
    expect(runnerA.output).toMatch(/"err":"job_id undefined is missing or not accepted","msg":"dropped a message that could not be carried out"/);
    expect(runnerA.output).toMatch(/"err":"job_id \\"..\\" is missing or not accepted"/);
  });

  describe('status updates from a runner the test plays (protocol of the reference, §12)', () => {
    const c = pulsarQueues(MANAGER_C);
    let setups: amqp.ConsumeMessage[] = [];
    let acks: string[] = [];
    let fake: amqp.Channel;

    beforeAll(async () => {
      fake = await broker.createChannel();
      await fake.assertQueue(c.setup, { durable: true });
      await fake.consume(c.setup, (message) => message && (setups.push(message), fake.ack(message)));
      await fake.assertQueue(c.statusUpdateAck, { durable: true });
      await fake.bindQueue(c.statusUpdateAck, 'pulsar', c.statusUpdateAck);
      await fake.consume(c.statusUpdateAck, (message) => message && (acks.push(JSON.parse(message.content.toString()).acknowledge_uuid_response), fake.ack(message)));
      await until('runner c to be seen listening', async () => (await api.get('/service-info')).json.tesp_compute.runners.find((r: any) => r.name === 'c')?.up === true);
    });

    afterAll(async () => {
      await fake?.close().catch(() => undefined);
    });

    /** Submits a task to runner c and plays its job: posts the bookkeeping files, then publishes `statuses`. */
    async function playJob(statuses: Array<Record<string, unknown>>): Promise<any> {
      setups = [];
      const id = await api.createTask({ resources: { backend_parameters: { runner: 'c' } }, executors: [{ image: 'none', command: ['echo', 'hi'] }] });
      const setup = await until('the setup message', () => setups[0], 30_000);
      expect(setup.properties.contentType).toBe('application/json');
      const message = JSON.parse(setup.content.toString());
      expect(message.setup_params).toBeDefined();
      const endpoint: string = message.remote_staging.action_mapper.files_endpoint;
      const t = new Date().toISOString();
      const post = async (clientPath: string, contents: string) => {
        const form = new FormData();
        form.append('file', new Blob([contents]), path.basename(clientPath));
        const res = await fetch(`${endpoint}?${new URLSearchParams({ path: clientPath, file_type: 'output_metadata' })}`, { method: 'POST', body: form });
        expect(res.status).toBe(200);
      };
      await post('/tesp/metadata/tesp/0.stdout', 'hi\n');
      await post('/tesp/metadata/tesp/progress', `start\t0\t${t}\nexit\t0\t${t}\t0\nend\t${t}\n`);
      await post('/tesp/metadata/tesp/files', '');
      for (const status of statuses) channel.publish('pulsar', c.statusUpdate, Buffer.from(JSON.stringify({ job_id: message.job_id, ...status })), { contentType: 'application/json', persistent: true });
      return { id, jobId: message.job_id, task: await api.waitFor(id, undefined, 30_000) };
    }

    const running = { status: 'running', complete: 'false' };
    const complete = { status: 'complete', complete: 'true', returncode: 0, job_stdout: '', job_stderr: '' };
    const comparable = (task: any) => ({ state: task.state, logs: task.logs.map((l: any) => ({ ...l, start_time: undefined, end_time: undefined, logs: l.logs.map((e: any) => ({ ...e, start_time: undefined, end_time: undefined })) })) });

    it('leaves a task the same after an update delivered twice and two delivered out of order as after one delivery in order', async () => {
      const inOrder = await playJob([running, complete]);
      expect(inOrder.task.state).toBe('COMPLETE');
      expect(inOrder.task.logs[0].logs[0]).toMatchObject({ exit_code: 0, stdout: 'hi\n' });
      const shuffled = await playJob([complete, running, complete]);
      await until('the queue to be drained', async () => (await channel.checkQueue(c.statusUpdate)).messageCount === 0);
      await sleep(500);
      const after = (await api.get(`/tasks/${shuffled.id}?view=FULL`)).json;
      expect(comparable(after)).toEqual(comparable((await api.get(`/tasks/${inOrder.id}?view=FULL`)).json));
    });

    it('answers acknowledge_uuid once the update is stored, also for a republished one (force_noack)', async () => {
      acks = [];
      const ackFields = { acknowledge_uuid: 'ack-uuid-1', acknowledge_queue: 'status_update_ack', acknowledge_submit_queue: 'status_update' };
      const played = await playJob([{ ...complete, ...ackFields }]);
      expect(played.task.state).toBe('COMPLETE');
      await until('the acknowledgement', () => acks.includes('ack-uuid-1'));
      channel.publish('pulsar', c.statusUpdate, Buffer.from(JSON.stringify({ job_id: played.jobId, ...complete, ...ackFields, force_noack: true })), { contentType: 'application/json', persistent: true });
      await until('the second acknowledgement', () => acks.filter((uuid) => uuid === 'ack-uuid-1').length === 2);
      expect((await api.get(`/tasks/${played.id}?view=FULL`)).json.logs).toEqual(played.task.logs);
    });
  });

  describe('two API replicas on one store, both consuming the status queue', () => {
    let holder: ServiceProcess;
    let apiOnly: ServiceProcess;
    let runnerD: RunnerProcess;

    beforeAll(async () => {
      runnerD = new RunnerProcess(RunnerProcess.tempDataDir(), { TESP_COMPUTE__LOCAL__RUNTIME: 'process', TESP_RUNNER__AMQP__URL: brokerUrl(), TESP_RUNNER__AMQP__MANAGER: MANAGER_D, TESP_RUNNER__DIRECT_STAGING: 'false' });
      await runnerD.start();
      const dataDir = ServiceProcess.tempDataDir();
      const replica = (name: string, extra: Record<string, string>) =>
        new ServiceProcess(dataDir, {
          TESP_SCHEDULER__HOLDER_ID: name,
          TESP_COMPUTE__BACKEND: 'pulsar',
          TESP_COMPUTE__PULSAR__RUNNERS: JSON.stringify([`d=${brokerUrl()}?manager=${MANAGER_D}&runtime=process`]),
          TESP_COMPUTE__PULSAR__HEALTH_INTERVAL_MS: '300',
          TESP_COMPUTE__PULSAR__STAGING_SECRET: 'shared-secret',
          ...extra,
        });
      // The API-only replica holds no task (and takes none over); the staging URLs name it, as a load balancer would.
      apiOnly = replica('api-only', { TESP_COMPUTE__PULSAR__MAX_CONCURRENT_TASKS: '0' });
      apiOnly.port = await freePort();
      holder = replica('holder', { TESP_COMPUTE__PULSAR__STAGING_URL: `http://127.0.0.1:${apiOnly.port}` });
      await apiOnly.start();
      await holder.start();
    });

    afterAll(async () => {
      await Promise.all([holder?.stop(), apiOnly?.stop(), runnerD?.stop()]);
      holder?.cleanup();
      runnerD?.cleanup();
    });

    it('settles a task whose holder was SIGKILLed from the status update alone, on the replica that holds nothing', async () => {
      const id = await holder.createTask(sleepTask('d', 3, 'holder-killed.txt'));
      await holder.waitFor(id, ['RUNNING'], 30_000);
      await holder.stop('SIGKILL');
      const task = await apiOnly.waitFor(id, undefined, 60_000);
      expect(task.state).toBe('COMPLETE');
      expect(task.logs).toHaveLength(1);
      expect(task.logs[0].logs[0]).toMatchObject({ exit_code: 0, stdout: 'finished\n' });
      expect(readFileSync(path.join(filesRoot, 'out', 'holder-killed.txt'), 'utf8')).toBe('done\n');
      expect(apiOnly.output).toMatch(new RegExp(`"taskId":"${id}","state":"COMPLETE".*"task finished"`));
      expect(apiOnly.output).not.toContain(`taken over by api-only`);
      await until('the job directory to be cleaned', () => jobDirs(runnerD).length === 0);
      await holder.start();
    });

    it('completes tasks created on either replica whichever replica consumes their updates', async () => {
      const ids = await Promise.all([0, 1, 2, 3].map((i) => (i % 2 ? apiOnly : holder).createTask(sleepTask('d', 0, `either-${i}.txt`))));
      for (const id of ids) expect((await apiOnly.waitFor(id, undefined, 60_000)).state).toBe('COMPLETE');
      for (let i = 0; i < 4; i++) expect(readFileSync(path.join(filesRoot, 'out', `either-${i}.txt`), 'utf8')).toBe('done\n');
    });
  });
});

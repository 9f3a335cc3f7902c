// The API dispatching to `tesp runner` processes over Pulsar's message-queue mode, through the real RabbitMQ on
// 127.0.0.1:5672 (reached through a TCP proxy, so the broker can be taken away and given back): two runners on two
// manager queues with no HTTP port, staging through the API's staging URLs, an HTTP file server as the tasks'
// storage, and the local Docker engine. Where the test itself plays a runner (to send status updates twice and out
// of order), it speaks the protocol of the pulsar-protocol reference §12 with amqplib, as Pulsar does.
import * as amqp from 'amqplib';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pulsarQueues } from '../../src/engine/pulsar-queues';
import { RunnerProcess } from '../runner/runner-process';
import { HttpFileServer, startHttpFileServer } from '../support/http-file-server';
import { describeWhen, tcpOpen } from '../support/service-check';
import { TcpProxy } from '../support/tcp-proxy';
import { containersOf, dockerAvailable, ServiceProcess, sleep } from './service-process';

const BROKER_PORT = 5672;
const run = Date.now().toString(36);
const MANAGER_A = `ta${run}`;
const MANAGER_B = `tb${run}`;
const MANAGER_C = `tc${run}`;

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
    });
    await api.start();
  });

  afterAll(async () => {
    await api?.stop();
    await Promise.all([runnerA?.stop(), runnerB?.stop()]);
    await files?.close();
    await proxy?.stop();
    for (const manager of [MANAGER_A, MANAGER_B, MANAGER_C]) {
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
    const task = await api.waitFor(id, undefined, 40_000).catch(async (err) => {
      console.log(api.output.slice(-3000), runnerA.output.slice(-5000), require('child_process').execSync(`find ${runnerA.stagingDir} -maxdepth 3; cat ${runnerA.stagingDir}/*/launch_config | head -c 3000`).toString());
      throw err;
    });
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
    // The end is stored: the runner was asked to remove the job's directory.
    await until('the job directory to be cleaned', () => jobDirs(runnerA).length === 0);
  });

  it('routes a task to each runner by its manager queue, a directory output included', async () => {
    const id = await api.createTask({
      resources: { backend_parameters: { runner: 'b' } },
      inputs: [{ path: '/in/a.txt', url: `${files.base}/in/dir/a.txt` }],
      outputs: [{ path: '/out', url: `${files.base}/out/copied/`, type: 'DIRECTORY' }],
      executors: [{ image: 'none', command: ['sh', '-c', 'mkdir -p "$TESP_TASK_ROOT/out/sub" && cp "$TESP_TASK_ROOT/in/a.txt" "$TESP_TASK_ROOT/out/" && echo b > "$TESP_TASK_ROOT/out/sub/b.txt"'] }],
    });
    const task = await api.waitFor(id, undefined, 60_000);
    if (task.state !== 'COMPLETE') console.log(JSON.stringify(task, null, 1), api.output.slice(-4000), runnerB.output.slice(-4000));
    expect(task.state).toBe('COMPLETE');
    expect(readFileSync(path.join(filesRoot, 'out', 'copied', 'a.txt'), 'utf8')).toBe('a\n');
    expect(readFileSync(path.join(filesRoot, 'out', 'copied', 'sub', 'b.txt'), 'utf8')).toBe('b\n');
    expect(runnerB.output).toContain(`${id}-1`);
    expect(runnerA.output).not.toContain(id);
  });
});

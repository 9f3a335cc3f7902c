// The pulsar backend against a real Pulsar 0.15, which cannot run on our machines (no PyPI): these tests run when
// TESP_TEST_PULSAR_URL names its REST server, e.g. TESP_TEST_PULSAR_URL=http://TOKEN@127.0.0.1:8913/, and when
// TESP_TEST_PULSAR_AMQP_URL names the broker and manager it consumes in message-queue mode, e.g.
// TESP_TEST_PULSAR_AMQP_URL='amqp://guest:guest@127.0.0.1:5672/?manager=_default_' (that Pulsar must reach the
// test's 127.0.0.1 for the staging URLs). Append runtime=process when its host has no Docker; with Docker it needs
// the image alpine:latest.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HttpFileServer, startHttpFileServer } from '../support/http-file-server';
import { describeWhenConfigured } from '../support/service-check';
import { ServiceProcess } from './service-process';

function realPulsarSuite(pulsarUrl: string): void {
  let api: ServiceProcess;
  let files: HttpFileServer;
  let root: string;

  beforeAll(async () => {
    root = mkdtempSync(path.join(os.tmpdir(), 'tesp-real-pulsar-'));
    writeFileSync(path.join(root, 'in.txt'), 'from http\n');
    files = await startHttpFileServer(root);
    api = new ServiceProcess(ServiceProcess.tempDataDir(), {
      TESP_COMPUTE__BACKEND: 'pulsar',
      TESP_COMPUTE__PULSAR__RUNNERS: JSON.stringify([`real=${pulsarUrl}`]),
      TESP_COMPUTE__PULSAR__POLL_INTERVAL_MS: '300',
    });
    await api.start();
  });

  afterAll(async () => {
    await api?.stop();
    api?.cleanup();
    await files?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('runs two executors with a content and an HTTP input and an HTTP output, with per-executor logs', async () => {
    const id = await api.createTask({
      inputs: [
        { path: '/in/a.txt', content: 'from content\n' },
        { path: '/in/b.txt', url: `${files.base}/in.txt` },
      ],
      outputs: [{ path: '/out/r.txt', url: `${files.base}/r.txt` }],
      executors: [
        { image: 'alpine:latest', command: ['sh', '-c', 'cat /in/a.txt /in/b.txt > /out/r.txt; echo one'] },
        { image: 'alpine:latest', command: ['sh', '-c', 'echo two >&2; exit 3'], ignore_error: true },
      ],
    });
    const task = await api.waitFor(id, undefined, 300_000);
    expect(task.state).toBe('COMPLETE');
    expect(readFileSync(path.join(root, 'r.txt'), 'utf8')).toBe('from content\nfrom http\n');
    expect(task.logs.at(-1).logs.map((l: any) => [l.exit_code, l.stdout, l.stderr])).toEqual([
      [0, 'one\n', ''],
      [3, '', 'two\n'],
    ]);
  });

  it('cancels a running sleep 600 and ends it CANCELED', async () => {
    const id = await api.createTask({ executors: [{ image: 'alpine:latest', command: ['sleep', '600'] }] });
    await api.waitFor(id, ['RUNNING'], 300_000);
    expect((await api.post(`/tasks/${id}:cancel`, {})).status).toBe(200);
    expect((await api.waitFor(id, ['CANCELED'], 120_000)).state).toBe('CANCELED');
  });
}

describeWhenConfigured('a real Pulsar REST server', 'TESP_TEST_PULSAR_URL', 'a Pulsar 0.15 REST server that can reach 127.0.0.1', realPulsarSuite);
describeWhenConfigured('a real Pulsar in message-queue mode', 'TESP_TEST_PULSAR_AMQP_URL', 'a Pulsar 0.15 consuming an AMQP broker, able to reach 127.0.0.1', realPulsarSuite);

// The API on a MongoDB store whose server comes and goes (the test-only wire-protocol server as a child process of
// this test): start-up waits for it with a log line, requests while it is away get 503 JSON instead of hanging,
// and everything works again once it is back.
import { MongoWireProcess, mongoWireInstalled } from '../support/mongo-wire';
import { describeWhen } from '../support/service-check';
import { freePort, ServiceProcess, sleep } from './service-process';

describeWhen('the API on a MongoDB store that comes and goes', mongoWireInstalled(), 'the wire server is not installed (npm --prefix test/mongo-wire ci)', () => {
  const wire = new MongoWireProcess();
  let api: ServiceProcess;

  afterAll(async () => {
    await api?.stop();
    api?.cleanup();
    await wire.stop();
  });

  it('waits for the server at start-up, answers 503 JSON while it is away, and serves again when it is back', async () => {
    wire.port = await freePort();
    api = new ServiceProcess(ServiceProcess.tempDataDir(), {
      TESP_STORE__KIND: 'mongodb',
      TESP_STORE__MONGODB__URL: wire.url('tesp_outage'),
      TESP_STORE__MONGODB__SERVER_SELECTION_TIMEOUT_MS: '1000',
      TESP_COMPUTE__LOCAL__RUNTIME: 'process',
    });
    const starting = api.start();
    const deadline = Date.now() + 20_000;
    while (!api.output.includes('waiting for MongoDB') && Date.now() < deadline) await sleep(100);
    expect(api.output).toContain('"msg":"waiting for MongoDB"');
    await wire.start();
    await starting;
    expect(api.output).toContain('"msg":"connected to MongoDB"');

    const id = await api.createTask({ executors: [{ image: 'ignored', command: ['echo', 'stored'] }] });
    expect((await api.waitFor(id)).state).toBe('COMPLETE');

    await wire.stop('SIGKILL');
    const away = await api.get(`/tasks/${id}`);
    expect(away.status).toBe(503);
    // Details of the outage stay in the server's log; the client learns it may try again.
    expect(away.json).toMatchObject({ status_code: 503, msg: expect.stringMatching(/^service unavailable \(id [0-9a-f-]+\)$/) });
    // The log line reaches this process's pipe a moment after the answer.
    const logged = Date.now() + 10_000;
    while (!api.output.includes('the task store (MongoDB) cannot be reached') && Date.now() < logged) await sleep(50);
    expect(api.output).toContain('the task store (MongoDB) cannot be reached');
    const create = await api.post('/tasks', { executors: [{ image: 'ignored', command: ['true'] }] });
    expect(create.status).toBe(503);

    // Back, empty (the wire server keeps nothing): the API reconnects and serves new tasks.
    await wire.start();
    let again = await api.post('/tasks', { executors: [{ image: 'ignored', command: ['echo', 'back'] }] });
    const retryUntil = Date.now() + 30_000;
    while (again.status !== 200 && Date.now() < retryUntil) {
      await sleep(250);
      again = await api.post('/tasks', { executors: [{ image: 'ignored', command: ['echo', 'back'] }] });
    }
    expect(again.status).toBe(200);
    expect((await api.waitFor(again.json.id)).state).toBe('COMPLETE');
  });
});

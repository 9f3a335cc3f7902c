// A create answers only once its task is on disk (SQLite, synchronous=FULL, written by the store's writer thread):
// a process killed right after its answers still has every task it answered for when it starts again.
import { Agent, request } from 'node:http';
import { ServiceProcess } from './service-process';

const TASK = JSON.stringify({ executors: [{ image: 'alpine', command: ['true'] }], tags: { durable: 'yes' } });
const CLIENTS = 32;
/** Answers to wait for before the kill: by then group-commit batches follow one another, more in flight. */
const ANSWERS_BEFORE_KILL = 300;

describe('durable creates', () => {
  let service: ServiceProcess;

  beforeAll(() => {
    // Tasks stay QUEUED: only the store is under test.
    service = new ServiceProcess(ServiceProcess.tempDataDir(), { TESP_COMPUTE__LOCAL__MAX_CONCURRENT_TASKS: '0', TESP_LOGGING__LEVEL: 'warn' });
  });

  afterAll(async () => {
    await service.stop('SIGKILL');
    service.cleanup();
  });

  it('keeps every task it answered 200 for when SIGKILLed right after an answer, with creates still in flight', async () => {
    await service.start();
    const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS });
    const answered: string[] = [];
    let answers = 0;
    let killed: Promise<void> | undefined;
    /** One create; resolves to its id if it was answered 200 whole, undefined if the kill cut it. */
    const create = () =>
      new Promise<string | undefined>((resolve, reject) => {
        const req = request(`${service.base}/tasks`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
          // The kill goes out the moment the answer's head is parsed, not after a turn of the event loop: the
          // server has had no time to commit anything it had not committed before answering.
          if (++answers === ANSWERS_BEFORE_KILL) killed = service.stop('SIGKILL');
          let body = '';
          res.on('data', (chunk: Buffer) => (body += String(chunk)));
          res.on('end', () => {
            if (res.statusCode !== 200) return reject(new Error(`create answered ${res.statusCode}: ${body}`));
            resolve((JSON.parse(body) as { id: string }).id);
          });
          res.on('error', () => resolve(undefined));
        });
        req.on('error', (err) => (killed ? resolve(undefined) : reject(err)));
        req.end(TASK);
      });
    const client = async () => {
      while (!killed) {
        const id = await create();
        if (id) answered.push(id);
      }
    };
    await Promise.all(Array.from({ length: CLIENTS }, client));
    await killed;
    agent.destroy();

    await service.start();
    const stored = new Set<string>();
    let token = '';
    do {
      const page = await service.get(`/tasks?tag_key=durable&page_size=2048${token ? `&page_token=${token}` : ''}`);
      for (const task of page.json.tasks as Array<{ id: string }>) stored.add(task.id);
      token = page.json.next_page_token ?? '';
    } while (token);
    expect(answered.length).toBeGreaterThanOrEqual(ANSWERS_BEFORE_KILL);
    expect(answered.filter((id) => !stored.has(id))).toEqual([]);
  });
});

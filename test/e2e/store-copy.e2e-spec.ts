// `tesp store copy`: a laptop's SQLite store copied into MongoDB (the wire server), then served from there.
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { MONGO_WIRE, mongoWireAvailable } from '../support/mongo-wire';
import { describeWhen } from '../support/service-check';
import { ServiceProcess } from './service-process';

const run = promisify(execFile);
const MAIN = path.resolve(__dirname, '..', '..', 'dist', 'main.js');

describeWhen('tesp store copy from SQLite to MongoDB', mongoWireAvailable(), 'no MongoDB wire server answers on 127.0.0.1:27027 (run npm --prefix test/mongo-wire ci && docker/start-mongo-wire.sh)', () => {
  const dataDir = ServiceProcess.tempDataDir();
  const url = MONGO_WIRE.url(`tesp_copy_${process.pid}_${Date.now()}`);
  const laptop = new ServiceProcess(dataDir, { TESP_COMPUTE__LOCAL__RUNTIME: 'process' });
  const production = new ServiceProcess(ServiceProcess.tempDataDir(), { TESP_COMPUTE__LOCAL__RUNTIME: 'process', TESP_STORE__KIND: 'mongodb', TESP_STORE__MONGODB__URL: url });

  afterAll(async () => {
    await laptop.stop();
    await production.stop();
    laptop.cleanup();
    production.cleanup();
  });

  it('copies every task with its logs, oldest first, and a second run copies nothing twice', async () => {
    await laptop.start();
    const ids: string[] = [];
    for (let n = 0; n < 12; n++) ids.push(await laptop.createTask({ name: `job-${n}`, tags: { n: String(n), 'dotted.key': 'x' }, executors: [{ image: 'ignored', command: ['echo', `out ${n}`] }] }));
    const before = [];
    for (const id of ids) before.push(await laptop.waitFor(id));
    await laptop.stop();

    const copy = () => run(process.execPath, ['--no-warnings', MAIN, 'store', 'copy', '--from', `sqlite:${path.join(dataDir, 'tesp.sqlite')}`, '--to', url], { env: { PATH: process.env.PATH } });
    const first = await copy();
    expect(first.stdout).toMatch(/"copied":12,"already_there":0,"msg":"store copy finished"/);
    const second = await copy();
    expect(second.stdout).toMatch(/"copied":0,"already_there":12,"msg":"store copy finished"/);

    await production.start();
    const listed = (await production.get('/tasks?view=FULL&page_size=100')).json.tasks;
    expect(listed.map((task: any) => task.id)).toEqual([...ids].reverse());
    expect(listed).toEqual([...before].reverse());
    expect((await production.get('/tasks?tag_key=dotted.key&tag_value=x&page_size=100')).json.tasks).toHaveLength(12);
  });

  it('refuses a store it cannot name, saying what it takes', async () => {
    await expect(run(process.execPath, ['--no-warnings', MAIN, 'store', 'copy', '--from', 'postgres://u:secret@h/db', '--to', url])).rejects.toMatchObject({
      code: 1,
      stdout: expect.stringMatching(/names no store: use sqlite:PATH or mongodb:\/\/host\[:port\]\/database/),
    });
    await expect(run(process.execPath, ['--no-warnings', MAIN, 'store', 'copy', '--from', 'postgres://u:secret@h/db', '--to', url])).rejects.toMatchObject({
      stdout: expect.not.stringContaining('secret'),
    });
  });
});

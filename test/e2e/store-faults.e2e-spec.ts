// The task store's faults as an operator meets them, against the built service: a full disk under data_dir, a
// data_dir that cannot be used, the SQLite file removed or corrupted while tesp runs, and a corrupted file at start.
// Each fault is answered with a message that names it, and no create that answered 200 is lost.
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { describeWhen } from '../support/service-check';
import { mountTmpfs, tmpfsUnavailable, unmount } from '../support/small-file-system';
import { runServiceUntilExit, ServiceProcess, sleep } from './service-process';
const QUEUED_ONLY = { TESP_COMPUTE__LOCAL__MAX_CONCURRENT_TASKS: '0', TESP_COMPUTE__LOCAL__RUNTIME: 'process' };
const task = (name: string, extra: Record<string, unknown> = {}) => ({ name, executors: [{ image: 'alpine', command: ['true'] }], tags: { fault: 'yes' }, ...extra });

/** Runs tesp with these variables (tasks kept QUEUED, any port) until it exits; resolves to its exit code and output. */
const runUntilExit = (env: Record<string, string>) => runServiceUntilExit({ TESP_SERVER__PORT: '0', ...QUEUED_ONLY, ...env });

/** What the start-up's error line says (Nest's ExceptionHandler logs a module that cannot be built). */
function fatalMessage(output: string): string {
  const line = output.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: number; msg: string; err?: string }).find((l) => l.level >= 50);
  return [line?.msg, line?.err].filter(Boolean).join(': ');
}

/** Writes zeros to `file` until the file system is full. */
function fillDisk(file: string): void {
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(64 * 1024);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
}

/** Names of the tasks the service lists (all pages). */
async function listedNames(service: ServiceProcess): Promise<string[]> {
  const names: string[] = [];
  let token = '';
  do {
    const page = await service.get(`/tasks?view=BASIC&page_size=100${token ? `&page_token=${token}` : ''}`);
    expect(page.status).toBe(200);
    for (const t of page.json.tasks as Array<{ name: string }>) names.push(t.name);
    token = page.json.next_page_token ?? '';
  } while (token);
  return names.sort();
}

/** Error lines the service logged with this message fragment, once there is one. */
async function errorLines(service: ServiceProcess, fragment: string): Promise<string[]> {
  await logged(service, fragment);
  return service.output.split('\n').filter((line) => line.includes(fragment) && line.includes('"level":50'));
}

/** Waits for a log line with this text (log lines are written after the answers they concern). */
async function logged(service: ServiceProcess, text: string): Promise<void> {
  for (let i = 0; i < 100 && !service.output.includes(text); i++) await sleep(50);
  expect(service.output).toContain(text);
}

/** Overwrites every page after the first (the schema) with random bytes. */
function scramblePages(file: string): void {
  const pageSize = 4096;
  const pages = Math.floor(statSync(file).size / pageSize);
  const fd = openSync(file, 'r+');
  try {
    for (let page = 1; page < pages; page++) writeSync(fd, randomBytes(pageSize), 0, pageSize, page * pageSize);
  } finally {
    closeSync(fd);
  }
}

const cannotMount = tmpfsUnavailable();

describeWhen('the task store on a full disk', cannotMount === undefined, cannotMount ?? '', () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'tesp-full-'));
  let service: ServiceProcess;

  beforeAll(() => {
    mountTmpfs(dataDir, 6 * 1024);
    service = new ServiceProcess(dataDir, QUEUED_ONLY);
  });

  afterAll(async () => {
    await service.stop('SIGKILL');
    unmount(dataDir);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('answers creates 507 saying the store is full, keeps serving reads, accepts again once space is freed, and loses no answered task', async () => {
    await service.start();
    const answered: string[] = [];
    for (let i = 0; i < 5; i++) {
      await service.createTask(task(`before-${i}`));
      answered.push(`before-${i}`);
    }
    const filler = path.join(dataDir, 'filler');
    fillDisk(filler);

    // The WAL may still hold room for a few; then creates fail, and none of those leaves a task.
    let refused: { status: number; json: any } | undefined;
    for (let i = 0; i < 200 && !refused; i++) {
      const res = await service.post('/tasks', task(`full-${i}`));
      if (res.status === 200) answered.push(`full-${i}`);
      else refused = res;
    }
    expect(refused).toBeDefined();
    expect(refused!.status).toBe(507);
    expect(refused!.json.msg).toMatch(/^the task store is full: no space left on the device of its file \(.*tesp\.sqlite\)/);
    expect(refused!.json.msg).toContain('data_dir');
    // Again: still refused, and reads are served meanwhile.
    expect((await service.post('/tasks', task('refused-again'))).status).toBe(507);
    expect(await listedNames(service)).toEqual([...answered].sort());
    const one = await service.get(`/tasks?view=MINIMAL&page_size=1`);
    expect((await service.get(`/tasks/${one.json.tasks[0].id}`)).status).toBe(200);
    expect(await errorLines(service, 'the task store is full')).toHaveLength(1);

    unlinkSync(filler);
    await service.createTask(task('after'));
    answered.push('after');
    await logged(service, 'the task store accepts writes again: space was freed');

    await service.stop();
    await service.start();
    expect(await listedNames(service)).toEqual([...answered].sort());
  });
});

describe('a data_dir or store file that cannot be used', () => {
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'tesp-baddir-'));

  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it('stops start-up naming data_dir and the path when data_dir is a file', async () => {
    const file = path.join(scratch, 'a-file');
    writeFileSync(file, 'not a directory');
    const { code, output } = await runUntilExit({ TESP_DATA_DIR: file });
    expect(code).toBe(1);
    expect(fatalMessage(output)).toContain(`data_dir ${file} is not a directory`);
  });

  it('stops start-up naming data_dir when a parent of it is a file', async () => {
    const dir = path.join(scratch, 'a-file', 'data');
    const { code, output } = await runUntilExit({ TESP_DATA_DIR: dir });
    expect(code).toBe(1);
    expect(fatalMessage(output)).toMatch(new RegExp(`data_dir ${dir} does not exist and cannot be created: .*(ENOTDIR|EEXIST)`));
  });

  it('creates a data_dir whose parents are missing', async () => {
    const dir = path.join(scratch, 'new', 'deeper', 'data');
    const service = new ServiceProcess(dir, QUEUED_ONLY);
    try {
      await service.start();
      expect(statSync(path.join(dir, 'tesp.sqlite')).isFile()).toBe(true);
    } finally {
      await service.stop();
    }
  });

  it('stops start-up naming store.sqlite.file and the path when it is a directory', async () => {
    const dir = path.join(scratch, 'with-dir');
    mkdirSync(path.join(dir, 'tesp.sqlite'), { recursive: true });
    const { code, output } = await runUntilExit({ TESP_DATA_DIR: dir });
    expect(code).toBe(1);
    expect(fatalMessage(output)).toContain(`store.sqlite.file ${path.join(dir, 'tesp.sqlite')} (in data_dir) is a directory, not a database file`);
  });

  it('stops start-up naming store.sqlite.file when it is not a database', async () => {
    const dir = path.join(scratch, 'not-a-db');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'tesp.sqlite'), 'hello, I am a text file and not SQLite at all'.repeat(200));
    const { code, output } = await runUntilExit({ TESP_DATA_DIR: dir });
    expect(code).toBe(1);
    expect(fatalMessage(output)).toMatch(new RegExp(`store.sqlite.file ${path.join(dir, 'tesp.sqlite')} \\(in data_dir\\) cannot be used: .*is corrupted: file is not a database \\(SQLITE_NOTADB\\)`));
  });

  describeWhen('on a read-only file system', cannotMount === undefined, cannotMount ?? '', () => {
    const readOnly = path.join(scratch, 'read-only');

    beforeAll(() => {
      mkdirSync(readOnly);
      mountTmpfs(readOnly, 1024, { readOnly: true });
    });

    afterAll(() => unmount(readOnly));

    it('stops start-up naming data_dir and the path when data_dir cannot be written, even by root', async () => {
      const { code, output } = await runUntilExit({ TESP_DATA_DIR: readOnly });
      expect(code).toBe(1);
      expect(fatalMessage(output)).toMatch(new RegExp(`data_dir ${readOnly} is not writable: .*EROFS`));
    });

    it('and when data_dir would have to be created there', async () => {
      const dir = path.join(readOnly, 'data');
      const { code, output } = await runUntilExit({ TESP_DATA_DIR: dir });
      expect(code).toBe(1);
      expect(fatalMessage(output)).toMatch(new RegExp(`data_dir ${dir} does not exist and cannot be created: .*EROFS`));
    });
  });
});

describe('the SQLite file removed or corrupted', () => {
  const services: ServiceProcess[] = [];
  const serviceFor = () => {
    const service = new ServiceProcess(ServiceProcess.tempDataDir(), QUEUED_ONLY);
    services.push(service);
    return service;
  };

  afterAll(async () => {
    for (const service of services) {
      await service.stop('SIGKILL');
      service.cleanup();
    }
  });

  it('refuses creates with a 503 naming the problem once the file is deleted, keeps the process up and logs it once', async () => {
    const service = serviceFor();
    await service.start();
    await service.createTask(task('before'));
    unlinkSync(path.join(service.dataDir, 'tesp.sqlite'));
    for (let i = 0; i < 3; i++) {
      const res = await service.post('/tasks', task(`after-${i}`));
      expect(res.status).toBe(503);
      expect(res.json.msg).toMatch(/^the task store's file .*tesp\.sqlite was removed or replaced while tesp runs \(the path no longer exists\); writes are refused/);
    }
    expect((await service.get('/service-info')).status).toBe(200);
    expect(await errorLines(service, 'was removed or replaced')).toHaveLength(1);
  });

  it('refuses to start on a file corrupted in the middle, naming it', async () => {
    const service = serviceFor();
    await service.start();
    for (let i = 0; i < 40; i++) await service.createTask(task(`t-${i}`, { description: 'x'.repeat(3000) }));
    await service.stop();
    const file = path.join(service.dataDir, 'tesp.sqlite');
    scramblePages(file);
    const { code, output } = await runUntilExit({ TESP_DATA_DIR: service.dataDir });
    expect(code).toBe(1);
    expect(fatalMessage(output)).toMatch(new RegExp(`store.sqlite.file ${file} \\(in data_dir\\) cannot be used: the task store's file ${file} is corrupted: `));
  });

  it('answers 503 naming the corruption on reads and writes when the file is corrupted while tesp runs, never a 200 create, and then refuses to start', async () => {
    const service = serviceFor();
    await service.start();
    for (let i = 0; i < 40; i++) await service.createTask(task(`t-${i}`, { description: 'x'.repeat(3000) }));
    const file = path.join(service.dataDir, 'tesp.sqlite');
    const outside = new Database(file);
    // Everything into the main file, then garbage over it; a write of the header alone makes every connection
    // drop the pages it has cached, so what it reads next comes from the damaged file.
    outside.pragma('wal_checkpoint(TRUNCATE)');
    scramblePages(file);
    outside.pragma('application_id = 7');
    outside.close();

    const list = await service.get('/tasks?view=FULL');
    expect(list.status).toBe(503);
    expect(list.json.msg).toMatch(/^the task store's file .*tesp\.sqlite is corrupted: .*SQLITE_CORRUPT/);
    const create = await service.post('/tasks', task('after'));
    expect(create.status).toBe(503);
    expect(create.json.msg).toMatch(/is corrupted/);
    expect((await service.get('/tasks?view=MINIMAL')).status).toBe(503);
    expect(await errorLines(service, 'is corrupted')).toHaveLength(1);
    // And a restart refuses the file instead of serving errors.
    await service.stop();
    const { code, output } = await runUntilExit({ TESP_DATA_DIR: service.dataDir });
    expect(code).toBe(1);
    expect(fatalMessage(output)).toContain(`the task store's file ${file} is corrupted`);
  });
});

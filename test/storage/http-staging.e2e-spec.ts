// Staging to and from a real local HTTP server: directory and glob outputs by PUT, credentials kept out of the
// outputs log, and Authorization kept to its origin across redirects.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, IncomingHttpHeaders } from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildExecutionPlan, taskLayout } from '../../src/engine/execution-plan';
import { HttpStorageBackend } from '../../src/storage/http/http-storage.backend';
import { Staging, TransferProgress } from '../../src/engine/staging';
import { StorageRegistry } from '../../src/storage/storage-registry';
import { TaskRecord, TesState } from '../../src/domain/tes-task';
import { HttpFileServer, httpTestSettings, startHttpFileServer } from '../support/http-file-server';

describe('staging over http', () => {
  let root: string;
  let work: string;
  /** Where the plans of a test run: the temporary work directory. */
  const layout = () => taskLayout(work);
  let server: HttpFileServer;
  let backend: HttpStorageBackend;
  let staging: Staging;

  beforeEach(async () => {
    root = mkdtempSync(path.join(os.tmpdir(), 'tesp-http-stage-root-'));
    work = mkdtempSync(path.join(os.tmpdir(), 'tesp-http-stage-work-'));
    server = await startHttpFileServer(root);
    backend = new HttpStorageBackend(httpTestSettings);
    staging = new Staging(new StorageRegistry([backend]));
  });

  /** The execution plan of a transfer-only task with these inputs and outputs, in the work directory. */
  const planFor = (files: Pick<TaskRecord, 'inputs' | 'outputs'>) =>
    buildExecutionPlan({ id: 'h1', state: TesState.INITIALIZING, creation_time: new Date().toISOString(), executors: [], logs: [], ...files });

  afterEach(async () => {
    await backend.close();
    await server.close();
    rmSync(root, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  });

  it('uploads DIRECTORY and glob outputs file by file, logging each with its size and no credentials', async () => {
    server.requireAuth('tes', 'top-secret');
    const port = new URL(server.base).port;
    const withUser = `http://tes:top-secret@127.0.0.1:${port}`;
    writeFileSync(path.join(root, 'in.txt'), 'input');
    const plan = planFor({
      inputs: [{ path: '/in/in.txt', url: `${withUser}/in.txt`, type: 'FILE' }],
      outputs: [
        { path: '/out/dir', url: `${withUser}/results/`, type: 'DIRECTORY' },
        { path: '/out/glob/**/*.csv', path_prefix: '/out/glob', url: `${withUser}/tables`, type: 'FILE' },
        { path: '/out/glob/*.none', path_prefix: '/out/glob', url: `${withUser}/none`, type: 'FILE' },
      ],
    });
    await staging.stageInputs(plan, layout());
    expect(readFileSync(path.join(layout().rootDir, 'in/in.txt'), 'utf8')).toBe('input');

    mkdirSync(path.join(layout().rootDir, 'out/dir/sub dir'), { recursive: true });
    writeFileSync(path.join(layout().rootDir, 'out/dir/a.txt'), 'aaa');
    writeFileSync(path.join(layout().rootDir, 'out/dir/sub dir/b#1.txt'), 'bb');
    mkdirSync(path.join(layout().rootDir, 'out/glob/x/.hidden'), { recursive: true });
    writeFileSync(path.join(layout().rootDir, 'out/glob/top.csv'), '1,2\n');
    writeFileSync(path.join(layout().rootDir, 'out/glob/x/.hidden/deep.csv'), '3\n');
    writeFileSync(path.join(layout().rootDir, 'out/glob/x/skip.txt'), 'no');
    const notes: string[] = [];
    const { outputs } = await staging.stageOutputs(plan, layout(), { log: (m) => notes.push(m) });

    const redacted = `http://***@127.0.0.1:${port}`;
    expect(outputs.sort((a, b) => a.path.localeCompare(b.path))).toEqual([
      { url: `${redacted}/results/a.txt`, path: '/out/dir/a.txt', size_bytes: '3' },
      { url: `${redacted}/results/sub%20dir/b%231.txt`, path: '/out/dir/sub dir/b#1.txt', size_bytes: '2' },
      { url: `${redacted}/tables/top.csv`, path: '/out/glob/top.csv', size_bytes: '4' },
      { url: `${redacted}/tables/x/.hidden/deep.csv`, path: '/out/glob/x/.hidden/deep.csv', size_bytes: '2' },
    ]);
    expect(JSON.stringify(outputs)).not.toContain('top-secret');
    expect(readFileSync(path.join(root, 'results/sub dir/b#1.txt'), 'utf8')).toBe('bb');
    expect(readFileSync(path.join(root, 'tables/x/.hidden/deep.csv'), 'utf8')).toBe('3\n');
    expect(server.requests.filter((r) => r.startsWith('PUT ')).sort()).toEqual([
      'PUT /results/a.txt',
      'PUT /results/sub dir/b#1.txt',
      'PUT /tables/top.csv',
      'PUT /tables/x/.hidden/deep.csv',
    ]);
    expect(notes).toEqual(['outputs[2]: /out/glob/*.none matched no files']);
  });

  it('reports the progress of transfers as increments that add up, without credentials, and none for short ones by default', async () => {
    server.requireAuth('tes', 'top-secret');
    const withUser = server.base.replace('//', '//tes:top-secret@');
    const big = Buffer.alloc(20 * 1024 * 1024 + 7, 7);
    writeFileSync(path.join(root, 'big.bin'), big);
    const plan = planFor({
      inputs: [{ path: '/data/big.bin', url: `${withUser}/big.bin`, type: 'FILE' }],
      outputs: [{ path: '/data/big.bin', url: `${withUser}/copy/big.bin`, type: 'FILE' }],
    });
    const events: TransferProgress[] = [];
    const progress = (event: TransferProgress) => events.push(event);
    await staging.stageInputs(plan, layout(), { progress, progressIntervalMs: 0 });
    await staging.stageOutputs(plan, layout(), { progress, progressIntervalMs: 0 });

    for (const [transfer, url] of [['inputs[0]', `${server.base.replace('//', '//***@')}/big.bin`], ['outputs[0]', `${server.base.replace('//', '//***@')}/copy/big.bin`]]) {
      const mine = events.filter((e) => e.transfer === transfer);
      expect(mine.length).toBeGreaterThan(2);
      expect(mine.every((e) => e.url === url && e.path === '/data/big.bin')).toBe(true);
      const sizes = mine.map((e) => e.bytes);
      expect(sizes).toEqual([...sizes].sort((a, b) => a - b));
      expect(mine.at(-1)).toMatchObject({ bytes: big.length, done: true });
      expect(mine.filter((e) => e.done)).toHaveLength(1);
    }
    expect(JSON.stringify(events)).not.toContain('top-secret');

    const quiet: TransferProgress[] = [];
    await staging.stageOutputs(plan, layout(), { progress: (event) => quiet.push(event) });
    expect(quiet).toEqual([]);
  });

  it('refuses an http DIRECTORY input naming the input, without credentials in the message', async () => {
    const plan = planFor({
      inputs: [{ path: '/in/d', url: `${server.base.replace('//', '//u:hidden-pw@')}/d/`, type: 'DIRECTORY' }],
    });
    const message = await staging.stageInputs(plan, layout()).then(() => '', (err: Error) => err.message);
    expect(message).toMatch(/^staging inputs\[0\] .* to \/in\/d failed: .*http\(s\) DIRECTORY inputs are not supported/);
    expect(message).not.toContain('hidden-pw');
  });

  it('sends Authorization across a same-origin redirect but not to another origin', async () => {
    const seen: IncomingHttpHeaders[] = [];
    const other = createServer((req, res) => {
      seen.push(req.headers);
      res.writeHead(200, { 'content-length': 5 }).end('other');
    });
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    const otherBase = `http://127.0.0.1:${(other.address() as { port: number }).port}`;
    try {
      writeFileSync(path.join(root, 'target.txt'), 'same origin');
      server.requireAuth('tes', 'pw');
      server.redirect('/same', `${server.base}/target.txt`);
      server.redirect('/away', `${otherBase}/file`);
      const port = new URL(server.base).port;
      const local = path.join(work, 'got.txt');
      await backend.download(`http://tes:pw@127.0.0.1:${port}/same`, local);
      expect(readFileSync(local, 'utf8')).toBe('same origin');
      await backend.download(`http://tes:pw@127.0.0.1:${port}/away`, local);
      expect(readFileSync(local, 'utf8')).toBe('other');
      expect(seen.length).toBeGreaterThan(0);
      expect(seen.every((headers) => headers.authorization === undefined)).toBe(true);
    } finally {
      other.closeAllConnections();
      await new Promise((resolve) => other.close(resolve));
    }
  });
});

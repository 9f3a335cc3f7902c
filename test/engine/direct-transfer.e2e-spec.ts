// Transfer-only tasks (no executors) through the API against real servers of each scheme (Ceph RGW, vsftpd, a
// local HTTP file server, the iRODS HTTP API double): each file streams from its source to its destination with
// nothing of it on tesp's disk, which the tests watch; and a child process copying 512 MiB keeps its RSS bounded.
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chownSync, mkdirSync, mkdtempSync, promises as fs, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, Server } from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { IrodsHttpApiDouble } from '../doubles/irods-http-api.double';
import { HttpFileServer, startHttpFileServer } from '../support/http-file-server';
import { loopbackStorageOverrides } from '../support/loopback-storage';
import { InProcessApp, startInProcessApp } from '../support/in-process-app';
import { runTask } from '../support/run-task';
import { dropBucket, newBucket, rgwClient } from '../support/rgw-client';
import { describeWhen, RGW, rgwAvailable, VSFTPD, vsftpdAvailable } from '../support/service-check';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const MiB = 1024 * 1024;
const FTP = `ftp://127.0.0.1:${VSFTPD.port}`;
const HOME = '/tempZone/home/alice';
const IRODS = 'irods://tempZone/home/alice';

const available = vsftpdAvailable() && rgwAvailable();
const missing = 'these transfers need vsftpd on 127.0.0.1:2121 and Ceph RGW on 127.0.0.1:7480 (see .ci/run)';

const storageSettings = (irodsBaseUrl: string) => ({
  'storage.s3.enabled': true,
  'storage.s3.endpoint': RGW.endpoint,
  'storage.s3.access_key_id': RGW.accessKeyId,
  'storage.s3.secret_access_key': RGW.secretAccessKey,
  'storage.s3.retry_base_ms': 10,
  'storage.ftp.credentials': [`127.0.0.1:${VSFTPD.port}=${VSFTPD.user}:${VSFTPD.password}`],
  'storage.ftp.retry_base_ms': 10,
  'storage.http.retry_base_ms': 10,
  ...loopbackStorageOverrides,
  'storage.irods.enabled': true,
  'storage.irods.zones': [`tempZone=${irodsBaseUrl}`],
  'storage.irods.credentials': ['tempZone=alice:apass'],
  'storage.irods.retry_base_ms': 10,
});

/** The largest file seen under `dir` while `during` runs, polling the tree every few milliseconds. */
async function largestFileDuring<T>(dir: string, during: Promise<T>): Promise<{ result: T; largest: number; where?: string }> {
  let largest = 0;
  let where: string | undefined;
  let running = true;
  const walk = async (current: string): Promise<void> => {
    const entries = await fs.readdir(current, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      const full = path.join(current, entry.name);
      if (entry.isDirectory()) await walk(full);
      else {
        const size = (await fs.lstat(full).catch(() => undefined))?.size ?? 0;
        if (size > largest) [largest, where] = [size, full];
      }
    }
  };
  const watching = (async () => {
    while (running) {
      await walk(dir);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })();
  try {
    return { result: await during, largest, where };
  } finally {
    running = false;
    await watching;
  }
}

/**
 * An HTTP server sending `size` bytes of a repeating pattern without holding them, and their SHA-256; with
 * `pauseMs`, 64 KiB at a time with a pause between. `cutShort` counts answers whose client left before the end.
 */
async function patternServer(size: number, pauseMs = 0): Promise<{ server: Server; url: string; sha256: string; cutShort: () => number }> {
  let cutShort = 0;
  const chunk = Buffer.alloc(MiB);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 31) % 251;
  const hash = createHash('sha256');
  for (let sent = 0; sent < size; sent += chunk.length) hash.update(chunk.subarray(0, Math.min(chunk.length, size - sent)));
  const server = createServer((req, res) => {
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const start = range ? Number(range[1]) : 0;
    const end = range && range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
    res.writeHead(range ? 206 : 200, { 'content-length': end - start + 1, 'accept-ranges': 'bytes', ...(range && { 'content-range': `bytes ${start}-${end}/${size}` }) });
    if (req.method === 'HEAD') return void res.end();
    res.once('close', () => {
      if (!res.writableFinished) cutShort += 1;
    });
    let at = start;
    const pump = () => {
      while (at <= end && !res.destroyed) {
        // The pattern repeats every MiB, so any offset maps into the one chunk.
        const from = at % chunk.length;
        const piece = chunk.subarray(from, Math.min(chunk.length, from + end - at + 1, from + (pauseMs ? 64 * 1024 : chunk.length)));
        at += piece.length;
        const flowing = res.write(piece);
        if (pauseMs) return void setTimeout(pump, pauseMs);
        if (!flowing) return void res.once('drain', pump);
      }
      if (!res.destroyed) res.end();
    };
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}/pattern.bin`, sha256: hash.digest('hex'), cutShort: () => cutShort };
}

describeWhen('transfer-only tasks stream between schemes', available, missing, () => {
  let server: InProcessApp;
  let dataDir: string;
  let work: string;
  let http: HttpFileServer;
  let irods: IrodsHttpApiDouble;
  let s3: S3Client;
  let bucket: string;
  let ftpName: string;
  let ftpDir: string;

  beforeAll(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), 'tesp-direct-transfer-'));
    dataDir = path.join(work, 'data');
    mkdirSync(path.join(work, 'http'));
    http = await startHttpFileServer(path.join(work, 'http'));
    irods = await new IrodsHttpApiDouble().start();
    s3 = rgwClient();
    bucket = await newBucket(s3, 'tesp-direct');
    ftpName = `direct-${process.pid}-${Date.now()}`;
    ftpDir = path.join(VSFTPD.dir, 'home-tes', 'data', ftpName);
    mkdirSync(ftpDir);
    const uid = Number(execFileSync('id', ['-u', VSFTPD.user], { encoding: 'utf8' }));
    chownSync(ftpDir, uid, uid);
    server = await startInProcessApp({ 'scheduler.poll_interval_ms': 50, 'compute.local.runtime': 'process', data_dir: dataDir, ...storageSettings(irods.baseUrl) });
  }, 60_000);

  afterAll(async () => {
    await server?.close();
    await http?.close();
    await irods?.close();
    if (s3 && bucket) await dropBucket(s3, bucket).catch(() => undefined);
    s3?.destroy();
    if (ftpDir) rmSync(ftpDir, { recursive: true, force: true });
    if (work) rmSync(work, { recursive: true, force: true });
  }, 60_000);

  const s3Object = async (key: string) => Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body!.transformToByteArray());
  const s3Keys = async (prefix: string) => ((await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }))).Contents ?? []).map((o) => o.Key).sort();
  const transfer = (input: object, output: object) => runTask(server, { inputs: [{ path: '/x/file', ...input }], outputs: [{ path: '/x/file', ...output }], executors: [] });

  it('copies one file along http → S3 → FTP → iRODS → http, byte for byte, with its log entry and checksum', async () => {
    const data = randomBytes(7 * MiB + 5);
    writeFileSync(path.join(work, 'http', 'start.bin'), data);

    const toS3 = await transfer({ url: `${http.base}/start.bin` }, { url: `s3://${bucket}/chain/one.bin` });
    expect(toS3.state).toBe('COMPLETE');
    expect(sha256(await s3Object('chain/one.bin'))).toBe(sha256(data));
    expect(toS3.logs[0].outputs).toEqual([{ url: `s3://${bucket}/chain/one.bin`, path: '/x/file', size_bytes: String(data.length) }]);
    expect(toS3.logs[0].metadata['sha256:/x/file']).toBe(sha256(data));

    const toFtp = await transfer({ url: `s3://${bucket}/chain/one.bin` }, { url: `${FTP}/data/${ftpName}/one.bin` });
    expect(toFtp.state).toBe('COMPLETE');
    expect(sha256(readFileSync(path.join(ftpDir, 'one.bin')))).toBe(sha256(data));

    const toIrods = await transfer({ url: `${FTP}/data/${ftpName}/one.bin` }, { url: `${IRODS}/chain/one.bin` });
    expect(toIrods.state).toBe('COMPLETE');
    expect(sha256(irods.object(`${HOME}/chain/one.bin`)!)).toBe(sha256(data));

    const toHttp = await transfer({ url: `${IRODS}/chain/one.bin` }, { url: `${http.base}/back/one.bin` });
    expect(toHttp.state).toBe('COMPLETE');
    expect(sha256(readFileSync(path.join(work, 'http', 'back', 'one.bin')))).toBe(sha256(data));
    expect(toHttp.logs[0].metadata['sha256:/x/file']).toBe(sha256(data));
    expect(irods.openHandles()).toEqual([]);
  }, 120_000);

  it('sends a content input to S3 from memory', async () => {
    const task = await transfer({ content: 'literal text\n' }, { url: `s3://${bucket}/content/note.txt` });
    expect(task.state).toBe('COMPLETE');
    expect((await s3Object('content/note.txt')).toString()).toBe('literal text\n');
    expect(task.logs[0].outputs).toEqual([{ url: `s3://${bucket}/content/note.txt`, path: '/x/file', size_bytes: '13' }]);
  });

  it('moves a DIRECTORY from S3 to iRODS, and a subdirectory and a file inside it to FTP, in one task', async () => {
    const big = randomBytes(5 * MiB + 1);
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'tree/a.txt', Body: 'alpha' }));
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'tree/sub/b.bin', Body: big }));
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'tree/sub/deeper/c.txt', Body: 'gamma' }));
    const task = await runTask(server, {
      inputs: [{ path: '/d/tree', url: `s3://${bucket}/tree`, type: 'DIRECTORY' }],
      outputs: [
        { path: '/d/tree', url: `${IRODS}/tree`, type: 'DIRECTORY' },
        { path: '/d/tree/sub', url: `${FTP}/data/${ftpName}/sub`, type: 'DIRECTORY' },
        { path: '/d/tree/a.txt', url: `${FTP}/data/${ftpName}/alone.txt`, type: 'FILE' },
      ],
      executors: [],
    });
    expect(task.state).toBe('COMPLETE');
    expect(irods.object(`${HOME}/tree/a.txt`)!.toString()).toBe('alpha');
    expect(sha256(irods.object(`${HOME}/tree/sub/b.bin`)!)).toBe(sha256(big));
    expect(irods.object(`${HOME}/tree/sub/deeper/c.txt`)!.toString()).toBe('gamma');
    expect(sha256(readFileSync(path.join(ftpDir, 'sub', 'b.bin')))).toBe(sha256(big));
    expect(readFileSync(path.join(ftpDir, 'sub', 'deeper', 'c.txt'), 'utf8')).toBe('gamma');
    expect(readFileSync(path.join(ftpDir, 'alone.txt'), 'utf8')).toBe('alpha');
    expect(task.logs[0].outputs.map((o: any) => [o.url, o.path, o.size_bytes]).sort()).toEqual([
      [`${FTP}/data/${ftpName}/alone.txt`, '/d/tree/a.txt', '5'],
      [`${FTP}/data/${ftpName}/sub/b.bin`, '/d/tree/sub/b.bin', String(big.length)],
      [`${FTP}/data/${ftpName}/sub/deeper/c.txt`, '/d/tree/sub/deeper/c.txt', '5'],
      [`${IRODS}/tree/a.txt`, '/d/tree/a.txt', '5'],
      [`${IRODS}/tree/sub/b.bin`, '/d/tree/sub/b.bin', String(big.length)],
      [`${IRODS}/tree/sub/deeper/c.txt`, '/d/tree/sub/deeper/c.txt', '5'],
    ]);
    expect(task.logs[0].metadata['sha256:/d/tree/sub/b.bin']).toBe(sha256(big));
  }, 120_000);

  it('gathers FILE inputs from several schemes into one DIRECTORY output', async () => {
    writeFileSync(path.join(work, 'http', 'gather.txt'), 'from http');
    irods.seed(`${HOME}/gather.txt`, Buffer.from('from irods'));
    const task = await runTask(server, {
      inputs: [
        { path: '/g/http.txt', url: `${http.base}/gather.txt` },
        { path: '/g/deep/irods.txt', url: `${IRODS}/gather.txt` },
        { path: '/g/note.txt', content: 'from content' },
      ],
      outputs: [{ path: '/g', url: `s3://${bucket}/gathered`, type: 'DIRECTORY' }],
      executors: [],
    });
    expect(task.state).toBe('COMPLETE');
    expect(await s3Keys('gathered/')).toEqual(['gathered/deep/irods.txt', 'gathered/http.txt', 'gathered/note.txt']);
    expect((await s3Object('gathered/deep/irods.txt')).toString()).toBe('from irods');
  });

  it('uploads the files of a DIRECTORY input that a glob output matches, relative to its prefix', async () => {
    irods.seed(`${HOME}/globbed/a.txt`, Buffer.from('a'));
    irods.seed(`${HOME}/globbed/b.csv`, Buffer.from('b'));
    irods.seed(`${HOME}/globbed/sub/c.txt`, Buffer.from('c'));
    const task = await runTask(server, {
      inputs: [{ path: '/in', url: `${IRODS}/globbed`, type: 'DIRECTORY' }],
      outputs: [{ path: '/in/**/*.txt', path_prefix: '/in', url: `s3://${bucket}/globbed`, type: 'FILE' }],
      executors: [],
    });
    expect(task.state).toBe('COMPLETE');
    expect(await s3Keys('globbed/')).toEqual(['globbed/a.txt', 'globbed/sub/c.txt']);
    expect(task.logs[0].outputs.map((o: any) => o.path).sort()).toEqual(['/in/a.txt', '/in/sub/c.txt']);

    const none = await runTask(server, {
      inputs: [{ path: '/in', url: `${IRODS}/globbed`, type: 'DIRECTORY' }],
      outputs: [{ path: '/in/*.none', path_prefix: '/in', url: `s3://${bucket}/never`, type: 'FILE' }],
      executors: [],
    });
    expect(none.state).toBe('COMPLETE');
    expect(none.logs[0].system_logs.join('\n')).toContain('outputs[0]: /in/*.none matched no files');
  });

  it('ends SYSTEM_ERROR for an output no input provides, and for a missing input no output names, writing nothing', async () => {
    writeFileSync(path.join(work, 'http', 'here.txt'), 'here');
    const unprovided = await runTask(server, {
      inputs: [{ path: '/t/here.txt', url: `${http.base}/here.txt` }],
      outputs: [
        { path: '/t/here.txt', url: `s3://${bucket}/unprovided/here.txt` },
        { path: '/t/missing.txt', url: `s3://${bucket}/unprovided/missing.txt` },
      ],
      executors: [],
    });
    expect(unprovided.state).toBe('SYSTEM_ERROR');
    expect(unprovided.logs[0].system_logs.join('\n')).toContain(`uploading outputs[1] (/t/missing.txt to s3://${bucket}/unprovided/missing.txt) failed: /t/missing.txt does not exist`);

    const missingInput = await runTask(server, {
      inputs: [
        { path: '/t/here.txt', url: `${http.base}/here.txt` },
        { path: '/t/unused.txt', url: `${http.base}/no-such-file.txt` },
      ],
      outputs: [{ path: '/t/here.txt', url: `s3://${bucket}/unprovided/here.txt` }],
      executors: [],
    });
    expect(missingInput.state).toBe('SYSTEM_ERROR');
    expect(missingInput.logs[0].system_logs.join('\n')).toMatch(/staging inputs\[1\] \(http:.*no-such-file\.txt\) to \/t\/unused\.txt failed: .*404/);
    // Both tasks check every input and plan every output before the first byte moves.
    expect(await s3Keys('unprovided/')).toEqual([]);
  });

  it('streams 200 MiB from http to S3 with no file of it under the task directories, the checksums equal', async () => {
    const size = 200 * MiB;
    const source = await patternServer(size);
    try {
      const { result: task, largest, where } = await largestFileDuring(path.join(dataDir, 'work'), runTask(server, {
        inputs: [{ path: '/big/data.bin', url: source.url }],
        outputs: [{ path: '/big/data.bin', url: `s3://${bucket}/big/data.bin` }],
        executors: [],
      }));
      expect(task.state).toBe('COMPLETE');
      // A few KiB at most (the task's own small files); the data would show as a file of up to 200 MiB.
      expect(largest < 4096 ? 'no file over 4 KiB' : `${where} had ${largest} bytes`).toBe('no file over 4 KiB');
      expect(task.logs[0].metadata['sha256:/big/data.bin']).toBe(source.sha256);
      const stored = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'big/data.bin' }));
      const hash = createHash('sha256');
      for await (const chunk of stored.Body as AsyncIterable<Buffer>) hash.update(chunk);
      expect(hash.digest('hex')).toBe(source.sha256);
    } finally {
      source.server.close();
      await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'big/data.bin' })).catch(() => undefined);
    }
  }, 300_000);

  it('stops the copy in flight when the task is canceled, closing the source and completing no object', async () => {
    const source = await patternServer(64 * MiB, 20); // about 3 MiB/s: a transfer of some 20 s
    const tasks = `${server.root}/ga4gh/tes/v1/tasks`;
    try {
      const created = await fetch(tasks, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ inputs: [{ path: '/c/slow.bin', url: source.url }], outputs: [{ path: '/c/slow.bin', url: `s3://${bucket}/canceled/slow.bin` }], executors: [] }),
      });
      const { id } = (await created.json()) as { id: string };
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect((await fetch(`${tasks}/${id}:cancel`, { method: 'POST' })).status).toBe(200);
      const deadline = Date.now() + 10_000;
      let state = '';
      while (Date.now() < deadline && (state !== 'CANCELED' || source.cutShort() === 0)) {
        state = ((await (await fetch(`${tasks}/${id}`)).json()) as { state: string }).state;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(state).toBe('CANCELED');
      expect(source.cutShort()).toBeGreaterThan(0);
      expect(await s3Keys('canceled/')).toEqual([]);
    } finally {
      source.server.closeAllConnections();
      source.server.close();
    }
  }, 60_000);

  it('copies 512 MiB from http to S3 in a child process whose RSS grows by less than 128 MiB', async () => {
    const size = 512 * MiB;
    const source = await patternServer(size);
    const plan = {
      taskId: 'memory',
      mounts: [],
      inputs: [{ index: 0, url: source.url, type: 'FILE', path: '/m/big.bin' }],
      outputs: [{ index: 0, url: `s3://${bucket}/memory/big.bin`, type: 'FILE', path: '/m/big.bin' }],
      executors: [],
      limits: {},
    };
    const settings = { data_dir: path.join(work, 'child-data'), 'logging.level': 'silent', ...storageSettings(irods.baseUrl) };
    try {
      const measured = await new Promise<{ rssBefore: number; rssPeak: number; bytes: number; sha256: string }>((resolve, reject) => {
        const child = spawn(process.execPath, ['--expose-gc', path.join(__dirname, 'direct-transfer-memory.child.js'), JSON.stringify({ settings, plan })], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        child.stdout.on('data', (chunk) => (out += chunk));
        child.stderr.on('data', (chunk) => (err += chunk));
        child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`the child exited with ${code}: ${err}`))));
      });
      const increase = measured.rssPeak - measured.rssBefore;
      process.stderr.write(`direct transfer of 512 MiB http → S3: RSS ${Math.round(measured.rssBefore / MiB)} MiB before, peak increase ${(increase / MiB).toFixed(1)} MiB\n`);
      expect(measured.bytes).toBe(size);
      expect(measured.sha256).toBe(source.sha256);
      expect(increase).toBeLessThan(128 * MiB);
    } finally {
      source.server.close();
      await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'memory/big.bin' })).catch(() => undefined);
    }
  }, 300_000);
});

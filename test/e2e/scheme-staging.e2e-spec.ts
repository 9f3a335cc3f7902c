// Staging through the API against the real servers of each scheme (Ceph RGW, vsftpd, a local HTTP server):
// DIRECTORY inputs and outputs through an executor, transfer-only tasks between two schemes, and wrong
// credentials ending the task SYSTEM_ERROR with a clear reason and no secret anywhere in the task.
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HttpFileServer, startHttpFileServer } from '../support/http-file-server';
import { InProcessApp, startInProcessApp } from '../support/in-process-app';
import { runTask } from '../support/run-task';
import { dropBucket, newBucket, rgwClient } from '../support/rgw-client';
import { describeWhen, RGW, rgwAvailable, VSFTPD, vsftpdAvailable } from '../support/service-check';
import { dockerAvailable } from './service-process';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const FTP = `ftp://127.0.0.1:${VSFTPD.port}`;
const S3_SETTINGS = {
  'storage.s3.enabled': true,
  'storage.s3.endpoint': RGW.endpoint,
  'storage.s3.access_key_id': RGW.accessKeyId,
  'storage.s3.secret_access_key': RGW.secretAccessKey,
  'storage.s3.retry_base_ms': 10,
};
const FAST = { 'scheduler.poll_interval_ms': 50 };

const available = dockerAvailable() && vsftpdAvailable() && rgwAvailable();
const missing = 'these tasks need Docker, vsftpd on 127.0.0.1:2121 and Ceph RGW on 127.0.0.1:7480 (see .ci/run)';

describeWhen('staging per scheme through the API', available, missing, () => {
  let server: InProcessApp;
  let s3: S3Client;
  let bucket: string;
  let ftpName: string;
  let ftpDir: string;
  let work: string;
  let http: HttpFileServer;

  beforeAll(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), 'tesp-scheme-staging-'));
    s3 = rgwClient();
    bucket = await newBucket(s3, 'tesp-staging');
    ftpName = `staging-${process.pid}-${Date.now()}`;
    ftpDir = path.join(VSFTPD.dir, 'home-tes', 'data', ftpName);
    mkdirSync(ftpDir);
    const uid = Number(execFileSync('id', ['-u', VSFTPD.user], { encoding: 'utf8' }));
    chownSync(ftpDir, uid, uid);
    mkdirSync(path.join(work, 'http'));
    http = await startHttpFileServer(path.join(work, 'http'));
    server = await startInProcessApp({
      ...FAST,
      ...S3_SETTINGS,
      'storage.ftp.credentials': [`127.0.0.1:${VSFTPD.port}=${VSFTPD.user}:${VSFTPD.password}`],
      'storage.ftp.retry_base_ms': 10,
      'storage.http.retry_base_ms': 10,
      // The test bucket through its own entry (same RGW, its keys in the URL); the defaults above still hold.
      'storage.s3.buckets': [`${bucket}=http://${RGW.accessKeyId}:${RGW.secretAccessKey}@127.0.0.1:${RGW.port}`],
    });
  }, 60_000);

  it('lists every configured location in service-info, without credentials', async () => {
    const info = (await (await fetch(`${server.root}/ga4gh/tes/v1/service-info`)).json()) as { storage: string[] };
    expect(info.storage).toEqual(expect.arrayContaining(['s3://', `s3://${bucket}`, `ftp://127.0.0.1:${VSFTPD.port}`, 'http://', 'https://']));
    expect(JSON.stringify(info)).not.toContain(RGW.secretAccessKey);
    expect(JSON.stringify(info)).not.toContain(VSFTPD.password);
  });

  afterAll(async () => {
    await server?.close();
    await http?.close();
    if (s3 && bucket) {
      await dropBucket(s3, bucket).catch(() => undefined);
    }
    s3?.destroy();
    if (ftpDir) rmSync(ftpDir, { recursive: true, force: true });
    if (work) rmSync(work, { recursive: true, force: true });
  }, 60_000);

  const s3Object = async (key: string) => Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body!.transformToByteArray());

  it('takes an S3 prefix in as a DIRECTORY, through an executor, out to an FTP DIRECTORY; then FTP → S3 without executors', async () => {
    const big = randomBytes(6 * 1024 * 1024 + 3);
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'in/a.txt', Body: 'alpha' }));
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'in/sub/b.bin', Body: big }));

    const ran = await runTask(server, {
      inputs: [{ path: '/data/in', url: `s3://${bucket}/in`, type: 'DIRECTORY' }],
      outputs: [{ path: '/data/out', url: `${FTP}/data/${ftpName}/out`, type: 'DIRECTORY' }],
      executors: [{ image: 'alpine:latest', command: ['sh', '-c', 'mkdir -p /data/out && cp -r /data/in/. /data/out/ && echo made > /data/out/made.txt'] }],
    });
    expect(ran.state).toBe('COMPLETE');
    expect(readFileSync(path.join(ftpDir, 'out', 'a.txt'), 'utf8')).toBe('alpha');
    expect(sha256(readFileSync(path.join(ftpDir, 'out', 'sub', 'b.bin')))).toBe(sha256(big));
    expect(readFileSync(path.join(ftpDir, 'out', 'made.txt'), 'utf8')).toBe('made\n');
    const outputs = ran.logs[0].outputs.map((o: any) => [o.url, o.path, o.size_bytes]).sort();
    expect(outputs).toEqual([
      [`${FTP}/data/${ftpName}/out/a.txt`, '/data/out/a.txt', '5'],
      [`${FTP}/data/${ftpName}/out/made.txt`, '/data/out/made.txt', '5'],
      [`${FTP}/data/${ftpName}/out/sub/b.bin`, '/data/out/sub/b.bin', String(big.length)],
    ]);
    expect(ran.logs[0].metadata['sha256:/data/out/sub/b.bin']).toBe(sha256(big));

    const moved = await runTask(server, {
      inputs: [{ path: '/move/tree', url: `${FTP}/data/${ftpName}/out`, type: 'DIRECTORY' }],
      outputs: [{ path: '/move/tree', url: `s3://${bucket}/back/`, type: 'DIRECTORY' }],
      executors: [],
    });
    expect(moved.state).toBe('COMPLETE');
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'back/' }));
    expect((listed.Contents ?? []).map((o) => o.Key).sort()).toEqual(['back/a.txt', 'back/made.txt', 'back/sub/b.bin']);
    expect(sha256(await s3Object('back/sub/b.bin'))).toBe(sha256(big));
  }, 120_000);

  it('copies http → S3 and S3 → http without executors, byte for byte', async () => {
    const data = randomBytes(9 * 1024 * 1024 + 11);
    writeFileSync(path.join(work, 'http', 'source.bin'), data);
    const copied = await runTask(server, {
      inputs: [{ path: '/c/source.bin', url: `${http.base}/source.bin` }],
      outputs: [{ path: '/c/source.bin', url: `s3://${bucket}/from-http/source.bin` }],
      executors: [],
    });
    expect(copied.state).toBe('COMPLETE');
    expect(sha256(await s3Object('from-http/source.bin'))).toBe(sha256(data));

    const back = await runTask(server, {
      inputs: [{ path: '/c/x.bin', url: `s3://${bucket}/from-http/source.bin` }],
      outputs: [{ path: '/c/x.bin', url: `${http.base}/returned/x.bin` }],
      executors: [],
    });
    expect(back.state).toBe('COMPLETE');
    expect(sha256(readFileSync(path.join(work, 'http', 'returned', 'x.bin')))).toBe(sha256(data));
  }, 120_000);

  it('ends SYSTEM_ERROR naming the refused FTP login, with the password nowhere in the task', async () => {
    writeFileSync(path.join(ftpDir, 'secret-test.txt'), 'x');
    const task = await runTask(server, {
      inputs: [{ path: '/t/x', url: `ftp://${VSFTPD.user}:WRONG-ftp-pass@127.0.0.1:${VSFTPD.port}/data/${ftpName}/secret-test.txt` }],
      outputs: [{ path: '/t/x', url: `s3://${bucket}/never/x` }],
      executors: [],
    });
    expect(task.state).toBe('SYSTEM_ERROR');
    expect(task.logs[0].system_logs.join('\n')).toMatch(/staging inputs\[0\] .*login as "tes" refused/);
    expect(JSON.stringify(task)).not.toContain('WRONG-ftp-pass');
  });

  it('ends SYSTEM_ERROR naming the refused http credentials, with the password nowhere in the task', async () => {
    mkdirSync(path.join(work, 'guarded'));
    writeFileSync(path.join(work, 'guarded', 'g.txt'), 'guarded');
    const guarded = await startHttpFileServer(path.join(work, 'guarded'));
    guarded.requireAuth('reader', 'right-pass');
    try {
      const task = await runTask(server, {
        inputs: [{ path: '/t/g', url: `${guarded.base.replace('//', '//reader:WRONG-http-pass@')}/g.txt` }],
        outputs: [{ path: '/t/g', url: `s3://${bucket}/never/g` }],
        executors: [],
      });
      expect(task.state).toBe('SYSTEM_ERROR');
      expect(task.logs[0].system_logs.join('\n')).toMatch(/staging inputs\[0\] .*answered HTTP 401: the credentials in the URL were refused/);
      expect(JSON.stringify(task)).not.toContain('WRONG-http-pass');
    } finally {
      await guarded.close();
    }
  });

  it('ends SYSTEM_ERROR naming the S3 refusal when tesp holds the wrong secret, without the secret', async () => {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'guarded/x.txt', Body: 'x' }));
    const wrong = await startInProcessApp({ ...FAST, ...S3_SETTINGS, 'storage.s3.secret_access_key': 'WRONG-s3-secret', 'storage.s3.retries': 0 });
    try {
      const task = await runTask(wrong, {
        inputs: [{ path: '/t/x', url: `s3://${bucket}/guarded/x.txt` }],
        outputs: [{ path: '/t/x', url: `s3://${bucket}/never/x` }],
        executors: [],
      });
      expect(task.state).toBe('SYSTEM_ERROR');
      expect(task.logs[0].system_logs.join('\n')).toMatch(/staging inputs\[0\] .*access denied .*check storage\.s3 credentials/);
      expect(JSON.stringify(task)).not.toContain('WRONG-s3-secret');
    } finally {
      await wrong.close();
    }
  });
});

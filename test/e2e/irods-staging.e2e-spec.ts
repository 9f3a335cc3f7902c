// iRODS staging through the API, against the iRODS HTTP API double (no iRODS server can run here): transfer-only
// tasks between iRODS and files and between iRODS and S3 (the LEXIS staging use), DIRECTORY inputs and outputs,
// and a clear SYSTEM_ERROR for wrong credentials.
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { IrodsHttpApiDouble } from '../doubles/irods-http-api.double';
import { InProcessApp, startInProcessApp } from '../support/in-process-app';
import { runTask } from '../support/run-task';
import { dropBucket, newBucket, rgwClient } from '../support/rgw-client';
import { describeWhen, RGW, rgwAvailable } from '../support/service-check';

const HOME = '/tempZone/home/alice';
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

const appSettings = (double: IrodsHttpApiDouble, allowed: string, credentials: string) => ({
  'scheduler.poll_interval_ms': 50,
  'compute.local.runtime': 'process',
  'storage.file.allowed_dirs': [allowed],
  'storage.irods.enabled': true,
  'storage.irods.zones': [`tempZone=${double.baseUrl}`],
  'storage.irods.credentials': [credentials],
  'storage.irods.retry_base_ms': 10,
});

describe('transfer-only tasks between iRODS and files', () => {
  let double: IrodsHttpApiDouble;
  let server: InProcessApp;
  let allowed: string;

  beforeAll(async () => {
    allowed = mkdtempSync(path.join(os.tmpdir(), 'tesp-irods-transfer-'));
    double = await new IrodsHttpApiDouble({ maxBodyBytes: 1024 * 1024 }).start();
    server = await startInProcessApp(appSettings(double, allowed, 'tempZone=alice:apass'));
  });

  afterAll(async () => {
    await server?.close();
    await double?.close();
    rmSync(allowed, { recursive: true, force: true });
  });

  it('moves a DIRECTORY from iRODS to a file location and back, with checksums, and shows iRODS in service-info', async () => {
    const big = randomBytes(3 * 1024 * 1024 + 1);
    double.seed(`${HOME}/run/in/one.txt`, Buffer.from('one'));
    double.seed(`${HOME}/run/in/sub/big.bin`, big);
    const down = await runTask(server, {
      inputs: [{ path: '/transfer/in', url: 'irods://tempZone/home/alice/run/in', type: 'DIRECTORY' }],
      outputs: [{ path: '/transfer/in', url: `file://${allowed}/copy`, type: 'DIRECTORY' }],
      executors: [],
    });
    expect(down.state).toBe('COMPLETE');
    expect(sha256(readFileSync(path.join(allowed, 'copy/sub/big.bin')))).toBe(sha256(big));

    const up = await runTask(server, {
      inputs: [{ path: '/transfer/out', url: `${allowed}/copy`, type: 'DIRECTORY' }],
      outputs: [{ path: '/transfer/out', url: 'irods://tempZone/home/alice/run/back', type: 'DIRECTORY' }],
      executors: [],
    });
    expect(up.state).toBe('COMPLETE');
    expect(double.object(`${HOME}/run/back/one.txt`)!.toString()).toBe('one');
    expect(sha256(double.object(`${HOME}/run/back/sub/big.bin`)!)).toBe(sha256(big));
    expect(up.logs[0].metadata['sha256:/transfer/out/sub/big.bin']).toBe(sha256(big));
    expect(up.logs[0].outputs.map((o: any) => o.url).sort()).toEqual(['irods://tempZone/home/alice/run/back/one.txt', 'irods://tempZone/home/alice/run/back/sub/big.bin']);
    expect(double.openHandles()).toEqual([]);

    const info = (await (await fetch(`${server.root}/ga4gh/tes/v1/service-info`)).json()) as { storage: string[] };
    expect(info.storage).toContain('irods://tempZone');
  });

  it('refuses at creation an iRODS URL that cannot be served, with a 400 naming it', async () => {
    const answer = await runTask(server, {
      inputs: [{ path: '/t/x', url: 'irods://elsewhere/home/x.txt' }],
      executors: [{ image: 'alpine', command: ['true'] }],
    });
    expect(answer.status).toBe(400);
    expect(answer.msg).toMatch(/irods:\/\/elsewhere\/home\/x\.txt: iRODS zone "elsewhere" is not configured/);
  });
});

describe('iRODS staging with wrong credentials', () => {
  it('ends the task SYSTEM_ERROR with a clear reason and no secret', async () => {
    const allowed = mkdtempSync(path.join(os.tmpdir(), 'tesp-irods-denied-'));
    const double = await new IrodsHttpApiDouble().start();
    const server = await startInProcessApp(appSettings(double, allowed, 'tempZone=alice:WRONG-irods-pass'));
    try {
      double.seed(`${HOME}/x.txt`, Buffer.from('x'));
      const task = await runTask(server, {
        inputs: [{ path: '/t/x', url: 'irods://tempZone/home/alice/x.txt' }],
        outputs: [{ path: '/t/x', url: `${allowed}/x` }],
        executors: [],
      });
      expect(task.state).toBe('SYSTEM_ERROR');
      expect(task.logs[0].system_logs.join('\n')).toMatch(/iRODS zone "tempZone" refused the credentials of user "alice" \(HTTP 401\); check storage\.irods\.credentials/);
      expect(JSON.stringify(task)).not.toContain('WRONG-irods-pass');
    } finally {
      await server.close();
      await double.close();
      rmSync(allowed, { recursive: true, force: true });
    }
  });
});

describeWhen('transfer-only tasks between iRODS and S3', rgwAvailable(), `no S3 server answers on ${RGW.endpoint} (run docker/start-ceph-rgw.sh)`, () => {
  let double: IrodsHttpApiDouble;
  let server: InProcessApp;
  let allowed: string;
  let s3: S3Client;
  let bucket: string;

  beforeAll(async () => {
    allowed = mkdtempSync(path.join(os.tmpdir(), 'tesp-irods-s3-'));
    double = await new IrodsHttpApiDouble().start();
    s3 = rgwClient();
    bucket = await newBucket(s3, 'tesp-irods');
    server = await startInProcessApp({
      ...appSettings(double, allowed, 'tempZone=alice:apass'),
      'storage.s3.enabled': true,
      'storage.s3.endpoint': RGW.endpoint,
      'storage.s3.access_key_id': RGW.accessKeyId,
      'storage.s3.secret_access_key': RGW.secretAccessKey,
    });
  });

  afterAll(async () => {
    await server?.close();
    await double?.close();
    if (s3) {
      await dropBucket(s3, bucket).catch(() => undefined);
      s3.destroy();
    }
    rmSync(allowed, { recursive: true, force: true });
  });

  it('copies iRODS → S3 and S3 → iRODS without executors, byte for byte', async () => {
    const data = randomBytes(12 * 1024 * 1024 + 5);
    double.seed(`${HOME}/lexis/result.bin`, data);
    const out = await runTask(server, {
      inputs: [{ path: '/x/result.bin', url: 'irods://tempZone/home/alice/lexis/result.bin' }],
      outputs: [{ path: '/x/result.bin', url: `s3://${bucket}/from-irods/result.bin` }],
      executors: [],
    });
    expect(out.state).toBe('COMPLETE');
    const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'from-irods/result.bin' }));
    expect(sha256(Buffer.from(await object.Body!.transformToByteArray()))).toBe(sha256(data));

    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'to-irods/input.txt', Body: 'from s3 to irods' }));
    const back = await runTask(server, {
      inputs: [{ path: '/x/input.txt', url: `s3://${bucket}/to-irods/input.txt` }],
      outputs: [{ path: '/x/input.txt', url: 'irods://tempZone/home/alice/lexis/staged/input.txt' }],
      executors: [],
    });
    expect(back.state).toBe('COMPLETE');
    expect(double.object(`${HOME}/lexis/staged/input.txt`)!.toString()).toBe('from s3 to irods');
  });
});

// 200 MiB through the whole service per scheme: staged in from the real server, hashed and copied by a
// container, staged out again; the checksums on both ends must agree. iRODS runs against the HTTP API double.
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chownSync, createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { IrodsHttpApiDouble } from '../doubles/irods-http-api.double';
import { HttpFileServer, startHttpFileServer } from '../support/http-file-server';
import { dropBucket, newBucket, rgwClient } from '../support/rgw-client';
import { hashStream, writeSource } from '../support/test-data';
import { describeWhen, RGW, rgwAvailable, VSFTPD, vsftpdAvailable } from '../support/service-check';
import { dockerAvailable, ServiceProcess } from './service-process';

const SIZE = 200 * 1024 * 1024;

const available = dockerAvailable() && vsftpdAvailable() && rgwAvailable();
const missing = 'the round trip needs Docker, vsftpd on 127.0.0.1:2121 and Ceph RGW on 127.0.0.1:7480 (see .ci/run)';

describeWhen('200 MiB round trips per scheme', available, missing, () => {
  let service: ServiceProcess;
  let work: string;
  let source: string;
  let digest: string;
  let http: HttpFileServer;
  let s3: S3Client;
  let bucket: string;
  let ftpName: string;
  let ftpDir: string;
  let irods: IrodsHttpApiDouble;

  beforeAll(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), 'tesp-round-trip-'));
    source = path.join(work, 'source.bin');
    digest = await writeSource(source, SIZE);

    mkdirSync(path.join(work, 'http'));
    execFileSync('cp', [source, path.join(work, 'http', 'in.bin')]);
    http = await startHttpFileServer(path.join(work, 'http'));

    s3 = rgwClient();
    bucket = await newBucket(s3, 'tesp-round');
    await new Upload({ client: s3, params: { Bucket: bucket, Key: 'in.bin', Body: createReadStream(source) }, partSize: 16 * 1024 * 1024 }).done();

    ftpName = `round-${process.pid}-${Date.now()}`;
    ftpDir = path.join(VSFTPD.dir, 'home-tes', 'data', ftpName);
    mkdirSync(ftpDir);
    execFileSync('cp', [source, path.join(ftpDir, 'in.bin')]);
    const uid = Number(execFileSync('id', ['-u', VSFTPD.user], { encoding: 'utf8' }));
    chownSync(ftpDir, uid, uid);

    irods = await new IrodsHttpApiDouble().start();
    irods.seed('/tempZone/home/alice/round/in.bin', readFileSync(source));

    service = new ServiceProcess(ServiceProcess.tempDataDir(), {
      TESP_STORAGE__IRODS__ENABLED: 'true',
      TESP_STORAGE__IRODS__ZONES: JSON.stringify([`tempZone=${irods.baseUrl}`]),
      TESP_STORAGE__IRODS__CREDENTIALS: JSON.stringify(['tempZone=alice:apass']),
      TESP_STORAGE__S3__ENABLED: 'true',
      TESP_STORAGE__S3__ENDPOINT: RGW.endpoint,
      TESP_STORAGE__S3__ACCESS_KEY_ID: RGW.accessKeyId,
      TESP_STORAGE__S3__SECRET_ACCESS_KEY: RGW.secretAccessKey,
      TESP_STORAGE__FTP__CREDENTIALS: `127.0.0.1:${VSFTPD.port}=${VSFTPD.user}:${VSFTPD.password}`,
    });
    await service.start();
  }, 180_000);

  afterAll(async () => {
    await service?.stop();
    service?.cleanup();
    await http?.close();
    await irods?.close();
    if (s3 && bucket) {
      // RGW keeps objects in memory: leave nothing behind.
      await dropBucket(s3, bucket).catch(() => undefined);
    }
    s3?.destroy();
    if (work) rmSync(work, { recursive: true, force: true });
    if (ftpDir) rmSync(ftpDir, { recursive: true, force: true });
  }, 60_000);

  const roundTrip = async (inUrl: string, outUrl: string) => {
    const id = await service.createTask({
      inputs: [{ path: '/data/in.bin', url: inUrl }],
      outputs: [
        { path: '/data/out.bin', url: outUrl },
        { path: '/data/sum.txt', url: `${outUrl}.sha256` },
      ],
      executors: [{ image: 'alpine:latest', command: ['sh', '-c', 'sha256sum /data/in.bin > /data/sum.txt && cp /data/in.bin /data/out.bin'] }],
    });
    const task = await service.waitFor(id, undefined, 240_000);
    expect(task.state).toBe('COMPLETE');
    // The container saw the same bytes, and tesp's streaming checksum of the output agrees.
    expect(task.logs[0].metadata['sha256:/data/out.bin']).toBe(digest);
    expect(task.logs[0].outputs.find((o: any) => o.path === '/data/out.bin').size_bytes).toBe(String(SIZE));
    return task;
  };

  it('http(s): in by parallel ranged GET, out by PUT', async () => {
    await roundTrip(`${http.base}/in.bin`, `${http.base}/out/out.bin`);
    expect(await hashStream(createReadStream(path.join(work, 'http', 'out', 'out.bin')))).toBe(digest);
  });

  it('s3: in by parallel ranged GET, out by parallel multipart upload', async () => {
    await roundTrip(`s3://${bucket}/in.bin`, `s3://${bucket}/out/out.bin`);
    const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'out/out.bin' }));
    expect(await hashStream(object.Body as Readable)).toBe(digest);
  });

  it('ftp: in and out over one connection per transfer', async () => {
    await roundTrip(`ftp://127.0.0.1:${VSFTPD.port}/data/${ftpName}/in.bin`, `ftp://127.0.0.1:${VSFTPD.port}/data/${ftpName}/out/out.bin`);
    expect(await hashStream(createReadStream(path.join(ftpDir, 'out', 'out.bin')))).toBe(digest);
  });

  it('irods: in by parallel ranged reads, out by one parallel write of three streams, checksum verified by iRODS', async () => {
    await roundTrip('irods://tempZone/home/alice/round/in.bin', 'irods://tempZone/home/alice/round/out/out.bin');
    expect(createHash('sha256').update(irods.object('/tempZone/home/alice/round/out/out.bin')!).digest('hex')).toBe(digest);
    expect(irods.requests('data-objects:parallel_write_init')).toBe(1);
    expect(irods.requests('data-objects:calculate_checksum')).toBe(2);
    expect(irods.concurrentStreamUse).toEqual([]);
    expect(irods.openHandles()).toEqual([]);
  });
});

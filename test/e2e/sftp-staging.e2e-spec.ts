// SFTP through the whole service, against a real OpenSSH server on loopback (test/support/sshd.ts): 200 MiB in,
// through a container and out again; DIRECTORY inputs and outputs; transfer-only tasks between SFTP and iRODS (the
// HTTP API double) and S3 (Ceph RGW) that leave no file of the data on tesp's disk; and the login failures a task
// must report clearly and without secrets.
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { IrodsHttpApiDouble } from '../doubles/irods-http-api.double';
import { startCuttingProxy, CuttingProxy } from '../support/cutting-proxy';
import { dropBucket, newBucket, rgwClient } from '../support/rgw-client';
import { hashStream, writeSource } from '../support/test-data';
import { describeWhen, RGW, rgwAvailable } from '../support/service-check';
import { Sshd, sshdAvailable, startSshd } from '../support/sshd';
import { dockerAvailable, ServiceProcess, sleep } from './service-process';

const SIZE = 200 * 1024 * 1024;

/** The largest regular file under `dir` (0 when there is none). */
function largestFile(dir: string): number {
  if (!existsSync(dir)) return 0;
  let largest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    try {
      largest = Math.max(largest, statSync(path.join(entry.parentPath ?? (entry as any).path, entry.name)).size);
    } catch {
      // gone meanwhile
    }
  }
  return largest;
}

const available = sshdAvailable() && dockerAvailable() && rgwAvailable();
const missing = 'needs OpenSSH (apt-get install openssh-server), Docker and Ceph RGW on 127.0.0.1:7480 (see .ci/run)';

describeWhen('SFTP staging through the service', available, missing, () => {
  let sshd: Sshd;
  let irods: IrodsHttpApiDouble;
  let s3: S3Client;
  let bucket: string;
  let service: ServiceProcess;
  let digest: string;
  let sftp: string;

  beforeAll(async () => {
    sshd = await startSshd();
    sftp = `sftp://127.0.0.1:${sshd.port}${sshd.dataDir}`;
    digest = await writeSource(path.join(sshd.dataDir, 'in.bin'), SIZE);
    mkdirSync(path.join(sshd.dataDir, 'dir', 'sub'), { recursive: true });
    writeFileSync(path.join(sshd.dataDir, 'dir', 'a.txt'), 'a\n');
    writeFileSync(path.join(sshd.dataDir, 'dir', 'sub', 'b.txt'), 'bb\n');
    irods = await new IrodsHttpApiDouble().start();
    s3 = rgwClient();
    bucket = await newBucket(s3, 'tesp-sftp');
    service = new ServiceProcess(ServiceProcess.tempDataDir(), {
      TESP_STORAGE__SFTP__HOSTS: JSON.stringify([`127.0.0.1:${sshd.port}=${sshd.user};key_file=${sshd.key.file}`]),
      TESP_STORAGE__SFTP__KNOWN_HOSTS: sshd.knownHosts,
      TESP_STORAGE__IRODS__ENABLED: 'true',
      TESP_STORAGE__IRODS__ZONES: JSON.stringify([`tempZone=${irods.baseUrl}`]),
      TESP_STORAGE__IRODS__CREDENTIALS: JSON.stringify(['tempZone=alice:apass']),
      TESP_STORAGE__S3__ENABLED: 'true',
      TESP_STORAGE__S3__ENDPOINT: RGW.endpoint,
      TESP_STORAGE__S3__ACCESS_KEY_ID: RGW.accessKeyId,
      TESP_STORAGE__S3__SECRET_ACCESS_KEY: RGW.secretAccessKey,
    });
    await service.start();
  }, 180_000);

  afterAll(async () => {
    await service?.stop();
    service?.cleanup();
    await irods?.close();
    if (s3 && bucket) await dropBucket(s3, bucket).catch(() => undefined);
    s3?.destroy();
    await sshd?.stop();
  }, 60_000);

  it('moves 200 MiB in, through a container and out again with equal checksums', async () => {
    const id = await service.createTask({
      inputs: [{ path: '/data/in.bin', url: `${sftp}/in.bin` }],
      outputs: [
        { path: '/data/out.bin', url: `${sftp}/out/out.bin` },
        { path: '/data/sum.txt', url: `${sftp}/out/sum.txt` },
      ],
      executors: [{ image: 'alpine:latest', command: ['sh', '-c', 'sha256sum /data/in.bin > /data/sum.txt && cp /data/in.bin /data/out.bin'] }],
    });
    const task = await service.waitFor(id, undefined, 240_000);
    expect(task.state).toBe('COMPLETE');
    expect(readFileSync(path.join(sshd.dataDir, 'out', 'sum.txt'), 'utf8').split(' ')[0]).toBe(digest);
    expect(task.logs[0].metadata['sha256:/data/out.bin']).toBe(digest);
    expect(await hashStream(createReadStream(path.join(sshd.dataDir, 'out', 'out.bin')))).toBe(digest);
  });

  it('stages a DIRECTORY input and a DIRECTORY output', async () => {
    const id = await service.createTask({
      inputs: [{ path: '/in', url: `${sftp}/dir`, type: 'DIRECTORY' }],
      outputs: [{ path: '/out', url: `${sftp}/dir-out`, type: 'DIRECTORY' }],
      executors: [{ image: 'alpine:latest', command: ['sh', '-c', 'mkdir -p /out/deep && cat /in/a.txt /in/sub/b.txt > /out/deep/ab.txt && cp /in/a.txt /out/a.txt'] }],
    });
    expect((await service.waitFor(id, undefined, 60_000)).state).toBe('COMPLETE');
    expect(readFileSync(path.join(sshd.dataDir, 'dir-out', 'deep', 'ab.txt'), 'utf8')).toBe('a\nbb\n');
    expect(readFileSync(path.join(sshd.dataDir, 'dir-out', 'a.txt'), 'utf8')).toBe('a\n');
  });

  /** Runs a transfer-only task and watches the task's work directory while it runs. */
  async function transfer(from: string, to: string): Promise<{ task: any; largestOnDisk: number }> {
    const id = await service.createTask({ inputs: [{ path: '/x/file.bin', url: from }], outputs: [{ path: '/x/file.bin', url: to }], executors: [] });
    let largestOnDisk = 0;
    for (;;) {
      largestOnDisk = Math.max(largestOnDisk, largestFile(path.join(service.dataDir, 'work')));
      const { json } = await service.get(`/tasks/${id}`);
      if (['COMPLETE', 'EXECUTOR_ERROR', 'SYSTEM_ERROR', 'CANCELED'].includes(json.state)) break;
      await sleep(20);
    }
    return { task: (await service.get(`/tasks/${id}?view=FULL`)).json, largestOnDisk };
  }

  it('transfers SFTP → iRODS, iRODS → SFTP and SFTP → S3 without a file of the data on its disk', async () => {
    const toIrods = await transfer(`${sftp}/in.bin`, 'irods://tempZone/home/alice/sftp/in.bin');
    expect(toIrods.task.state).toBe('COMPLETE');
    expect(createHash('sha256').update(irods.object('/tempZone/home/alice/sftp/in.bin')!).digest('hex')).toBe(digest);

    const back = await transfer('irods://tempZone/home/alice/sftp/in.bin', `${sftp}/back/in.bin`);
    expect(back.task.state).toBe('COMPLETE');
    expect(await hashStream(createReadStream(path.join(sshd.dataDir, 'back', 'in.bin')))).toBe(digest);

    const toS3 = await transfer(`${sftp}/in.bin`, `s3://${bucket}/sftp/in.bin`);
    expect(toS3.task.state).toBe('COMPLETE');
    const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'sftp/in.bin' }));
    expect(await hashStream(object.Body as Readable)).toBe(digest);

    for (const run of [toIrods, back, toS3]) {
      expect(run.task.logs[0].metadata['sha256:/x/file.bin']).toBe(digest);
      expect(run.largestOnDisk).toBeLessThan(64 * 1024);
    }
  });
});

describeWhen('SFTP login failures', sshdAvailable(), 'needs OpenSSH (apt-get install openssh-server)', () => {
  let sshd: Sshd;
  let proxy: CuttingProxy;
  let service: ServiceProcess;

  beforeAll(async () => {
    sshd = await startSshd();
    writeFileSync(path.join(sshd.dataDir, 'in.txt'), 'x\n');
    // A second address of the same server (known_hosts names 127.0.0.1 on every port), for a second login entry.
    proxy = await startCuttingProxy(sshd.port);
    service = new ServiceProcess(ServiceProcess.tempDataDir(), {
      TESP_STORAGE__SFTP__HOSTS: JSON.stringify([
        `127.0.0.1:${sshd.port}=${sshd.user};key_file=${sshd.strangerKey.file}`,
        `127.0.0.1:${proxy.port}=nosuchuser;key_file=${sshd.key.file}`,
        `localhost:${sshd.port}=${sshd.user};key_file=${sshd.key.file}`,
      ]),
      TESP_STORAGE__SFTP__KNOWN_HOSTS: sshd.knownHosts,
      TESP_COMPUTE__LOCAL__RUNTIME: 'process',
    });
    await service.start();
  }, 60_000);

  afterAll(async () => {
    await service?.stop();
    service?.cleanup();
    await proxy?.close();
    await sshd?.stop();
  });

  const failure = async (url: string) => {
    const id = await service.createTask({ inputs: [{ path: '/in/x', url }], executors: [{ image: 'ignored', command: ['true'] }] });
    const task = await service.waitFor(id);
    expect(task.state).toBe('SYSTEM_ERROR');
    const reason = task.logs.at(-1).system_logs.join('\n');
    expect(reason).not.toMatch(/BEGIN OPENSSH|PRIVATE KEY/);
    return reason;
  };

  it('a key the server does not accept', async () => {
    expect(await failure(`sftp://127.0.0.1:${sshd.port}${sshd.dataDir}/in.txt`)).toMatch(/authenticat/i);
  });

  it('an unknown user', async () => {
    expect(await failure(`sftp://127.0.0.1:${proxy.port}${sshd.dataDir}/in.txt`)).toMatch(/authenticat/i);
  });

  it('an unknown host key, refused before any login', async () => {
    expect(await failure(`sftp://localhost:${sshd.port}${sshd.dataDir}/in.txt`)).toMatch(/host key of \[localhost\]:\d+ is not in storage\.sftp\.known_hosts/);
  });
});

describeWhen('SFTP → iRODS memory', sshdAvailable(), 'needs OpenSSH (apt-get install openssh-server)', () => {
  const GiB = 1024 * 1024 * 1024;
  let sshd: Sshd;
  let irods: IrodsHttpApiDouble;

  beforeAll(async () => {
    sshd = await startSshd();
    irods = await new IrodsHttpApiDouble().start();
  }, 60_000);

  afterAll(async () => {
    await irods?.close();
    await sshd?.stop();
  });

  it('streams 1 GiB from SFTP to iRODS chunk by chunk in a process whose RSS grows by less than 128 MiB', async () => {
    const digest = await writeSource(path.join(sshd.dataDir, 'big.bin'), GiB);
    const plan = {
      taskId: 'memory',
      mounts: [],
      inputs: [{ index: 0, url: `sftp://127.0.0.1:${sshd.port}${sshd.dataDir}/big.bin`, type: 'FILE', path: '/m/big.bin' }],
      outputs: [{ index: 0, url: 'irods://tempZone/home/alice/big.bin', type: 'FILE', path: '/m/big.bin' }],
      executors: [],
      limits: {},
    };
    const settings = {
      'logging.level': 'silent',
      'storage.sftp.hosts': [`127.0.0.1:${sshd.port}=${sshd.user};key_file=${sshd.key.file}`],
      'storage.sftp.known_hosts': sshd.knownHosts,
      'storage.irods.enabled': true,
      'storage.irods.zones': [`tempZone=${irods.baseUrl}`],
      'storage.irods.credentials': ['tempZone=alice:apass'],
    };
    const child = path.join(__dirname, '..', 'engine', 'direct-transfer-memory.child.js');
    const measured = await new Promise<{ rssBefore: number; rssPeak: number; bytes: number; sha256: string }>((resolve, reject) => {
      const proc = spawn(process.execPath, ['--expose-gc', child, JSON.stringify({ settings, plan })], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      proc.stdout.on('data', (chunk) => (out += chunk));
      proc.stderr.on('data', (chunk) => (err += chunk));
      proc.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`the child exited with ${code}: ${err}`))));
    });
    const increase = measured.rssPeak - measured.rssBefore;
    process.stderr.write(`SFTP → iRODS, 1 GiB streamed: RSS ${Math.round(measured.rssBefore / 2 ** 20)} MiB before, peak increase ${(increase / 2 ** 20).toFixed(1)} MiB\n`);
    expect(measured.bytes).toBe(GiB);
    expect(measured.sha256).toBe(digest);
    expect(createHash('sha256').update(irods.object('/tempZone/home/alice/big.bin')!).digest('hex')).toBe(digest);
    expect(increase).toBeLessThan(128 * 2 ** 20);
  }, 600_000);
});

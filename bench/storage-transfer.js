// Per-scheme transfer throughput: tesp's backends (S3: parallel ranged GET and parallel multipart upload; FTP:
// one connection per transfer; iRODS: parallel ranged reads and one parallel write) against a plain single-stream
// transfer of the same bytes with the same library, measured in the same run against the real local servers
// (Ceph RGW on :7480, vsftpd on :2121) and, for iRODS, the HTTP API double in its own process.
'use strict';
const { execFileSync } = require('node:child_process');
const { chownSync, createReadStream, createWriteStream, mkdirSync, statSync } = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { pipeline } = require('node:stream/promises');
const { tempDir, removeDir, fmt, ROOT, startIrodsDouble } = require('./lib');

const SIZE = Number(process.env.BENCH_STORAGE_MB ?? 256) * 1024 * 1024;
const RUNS = 3;
const RGW = { endpoint: 'http://127.0.0.1:7480', accessKeyId: 'TESACCESSKEY', secretAccessKey: 'TESSECRETKEY' };
const FTP = { port: 2121, user: 'tes', password: 'tespass', home: '/tmp/tesp-vsftpd/home-tes' };

/** tesp's backend for a scheme with the settings every storage bench uses. */
function makeBackend(scheme, irodsBaseUrl, overrides = {}) {
  const parts = { partBytes: 8 * 1024 * 1024, parallel: 4 };
  const retry = { retries: 5, retry_base_ms: 500, retry_max_ms: 30000 };
  if (scheme === 's3') {
    const { S3StorageBackend } = require(path.join(ROOT, 'dist', 'storage', 's3', 's3-storage.backend.js'));
    return new S3StorageBackend({ endpoint: RGW.endpoint, region: 'us-east-1', access_key_id: RGW.accessKeyId, secret_access_key: RGW.secretAccessKey, force_path_style: true, buckets: [], ...retry }, parts);
  }
  if (scheme === 'ftp') {
    const { FtpStorageBackend } = require(path.join(ROOT, 'dist', 'storage', 'ftp', 'ftp-storage.backend.js'));
    return new FtpStorageBackend({ credentials: [`127.0.0.1:${FTP.port}=${FTP.user}:${FTP.password}`], timeout_ms: 30000, allow_private_addresses: true, allowed_private_cidrs: [], ...retry });
  }
  const { IrodsStorageBackend } = require(path.join(ROOT, 'dist', 'storage', 'irods', 'irods-storage.backend.js'));
  const settings = { zones: [`tempZone=${irodsBaseUrl}`], credentials: ['tempZone=alice:apass'], access_tokens: [], write_streams: 3, chunk_size_mb: 8, verify_checksums: true, idle_timeout_ms: 60000, ...retry };
  return new IrodsStorageBackend({ ...settings, ...overrides }, parts);
}

function listening(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

async function makeSource(file, size = SIZE) {
  const out = createWriteStream(file);
  const chunk = Buffer.alloc(8 * 1024 * 1024);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 7) % 253;
  for (let written = 0; written < size; written += chunk.length) {
    if (!out.write(chunk)) await new Promise((r) => out.once('drain', r));
  }
  await new Promise((r) => out.end(r));
}

async function best(fn) {
  let fastest = Infinity;
  for (let i = 0; i < RUNS; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    fastest = Math.min(fastest, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return fastest;
}

function row(name, ours, plain, how, baselineHow, runs = RUNS) {
  const mb = SIZE / 2 ** 20;
  return {
    name: `${name}, ${mb} MiB (best of ${runs})`,
    tesp: `${fmt(mb / ours, 0)} MiB/s (${how})`,
    baseline: `${baselineHow}: ${fmt(mb / plain, 0)} MiB/s`,
    ratio: `${fmt(plain / ours, 2)} × baseline throughput`,
  };
}

async function s3Rows(dir, source) {
  const { S3Client, CreateBucketCommand, DeleteBucketCommand, DeleteObjectCommand, GetObjectCommand, PutObjectCommand } = require('@aws-sdk/client-s3');
  const client = new S3Client({ endpoint: RGW.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: RGW, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
  const backend = makeBackend('s3');
  const bucket = `tesp-bench-${Date.now()}`;
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  try {
    const upOurs = await best(() => backend.upload(source, `s3://${bucket}/tesp.bin`));
    const upPlain = await best(() => client.send(new PutObjectCommand({ Bucket: bucket, Key: 'plain.bin', Body: createReadStream(source), ContentLength: SIZE })));
    const downOurs = await best(() => backend.download(`s3://${bucket}/plain.bin`, path.join(dir, 's3-tesp.bin')));
    const downPlain = await best(async () => {
      const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'plain.bin' }));
      await pipeline(res.Body, createWriteStream(path.join(dir, 's3-plain.bin')));
    });
    return [
      row('s3 download', downOurs, downPlain, '4 parallel 8 MiB ranged GETs', 'one GetObject stream, same SDK'),
      row('s3 upload', upOurs, upPlain, 'multipart, 4 parallel 8 MiB parts', 'one PutObject stream, same SDK'),
    ];
  } finally {
    // RGW keeps objects in memory: leave nothing behind.
    for (const key of ['tesp.bin', 'plain.bin']) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key })).catch(() => undefined);
    await client.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => undefined);
    await backend.close();
    client.destroy();
  }
}

async function ftpRows(dir, source) {
  const ftp = require('basic-ftp');
  const backend = makeBackend('ftp');
  const name = `bench-${Date.now()}`;
  const remoteDir = path.join(FTP.home, 'data', name);
  mkdirSync(remoteDir);
  const uid = Number(execFileSync('id', ['-u', FTP.user], { encoding: 'utf8' }));
  chownSync(remoteDir, uid, uid);
  const plainClient = async (work) => {
    const client = new ftp.Client(30000);
    await client.access({ host: '127.0.0.1', port: FTP.port, user: FTP.user, password: FTP.password });
    try {
      await work(client);
    } finally {
      client.close();
    }
  };
  try {
    const url = `ftp://127.0.0.1:${FTP.port}/data/${name}`;
    const upOurs = await best(() => backend.upload(source, `${url}/tesp.bin`));
    const upPlain = await best(() => plainClient((c) => c.uploadFrom(createReadStream(source), `data/${name}/plain.bin`)));
    const downOurs = await best(() => backend.download(`${url}/plain.bin`, path.join(dir, 'ftp-tesp.bin')));
    const downPlain = await best(() => plainClient((c) => c.downloadTo(createWriteStream(path.join(dir, 'ftp-plain.bin')), `data/${name}/plain.bin`)));
    if (statSync(path.join(dir, 'ftp-tesp.bin')).size !== SIZE) throw new Error('ftp download size mismatch');
    return [
      row('ftp download', downOurs, downPlain, 'one connection, SIZE check, REST resume on retry', 'basic-ftp downloadTo'),
      row('ftp upload', upOurs, upPlain, 'one connection, SHA-256 while streaming, SIZE check', 'basic-ftp uploadFrom'),
    ];
  } finally {
    removeDir(remoteDir);
  }
}

/** Logs the bench user in to the double; resolves to the Authorization header of its bearer token. */
async function irodsLogin(request, baseUrl) {
  const login = await request(`${baseUrl}/authenticate`, { method: 'POST', headers: { authorization: `Basic ${Buffer.from('alice:apass').toString('base64')}` } });
  return { authorization: `Bearer ${await login.body.text()}` };
}

/** The plain client: one request at a time, chunks as large as the body limit allows, truncate=0 after the first. */
async function sequentialIrodsWrite(request, open, baseUrl, auth, source, lpath) {
  const chunkBytes = 8 * 1024 * 1024 - 64 * 1024;
  const file = await open(source, 'r');
  const buffer = Buffer.allocUnsafe(chunkBytes);
  try {
    for (let offset = 0; offset < SIZE; offset += chunkBytes) {
      const { bytesRead } = await file.read(buffer, 0, Math.min(chunkBytes, SIZE - offset), offset);
      const headers = { ...auth, 'content-type': 'application/octet-stream', 'irods-api-request-op': 'write', 'irods-api-request-lpath': lpath, 'irods-api-request-offset': String(offset), 'irods-api-request-truncate': offset === 0 ? '1' : '0' };
      const res = await request(`${baseUrl}/data-objects`, { method: 'POST', headers, body: buffer.subarray(0, bytesRead) });
      const answer = await res.body.json();
      if (res.statusCode !== 200 || answer.irods_response.status_code !== 0) throw new Error(`sequential write failed: ${res.statusCode}`);
    }
  } finally {
    await file.close();
  }
}

async function irodsRows(dir, source) {
  const { request } = require('undici');
  const { open } = require('node:fs/promises');
  const double = await startIrodsDouble({ users: { alice: 'apass' } });
  const backend = makeBackend('irods', double.baseUrl);
  // The same uploads without the checksum round trip, to show what the write path itself costs.
  const unverified = makeBackend('irods', double.baseUrl, { verify_checksums: false });
  const home = '/tempZone/home/alice';
  try {
    const auth = await irodsLogin(request, double.baseUrl);
    const remove = async (lpath) => {
      const body = new URLSearchParams({ op: 'remove', lpath, 'catalog-only': '0', 'no-trash': '1' }).toString();
      await (await request(`${double.baseUrl}/data-objects`, { method: 'POST', headers: { ...auth, 'content-type': 'application/x-www-form-urlencoded' }, body })).body.dump();
    };
    // The double keeps objects in memory: uploads alternate, each to a new object that is removed afterwards, so
    // every variant meets the same server state.
    const uploads = {
      ours: () => backend.upload(source, `irods://tempZone/home/alice/up.bin`),
      unverified: () => unverified.upload(source, `irods://tempZone/home/alice/up.bin`),
      plain: () => sequentialIrodsWrite(request, open, double.baseUrl, auth, source, `${home}/up.bin`),
    };
    const fastest = { ours: Infinity, unverified: Infinity, plain: Infinity };
    for (let i = 0; i < RUNS + 2; i++) {
      for (const [name, upload] of Object.entries(uploads)) {
        const t0 = process.hrtime.bigint();
        await upload();
        fastest[name] = Math.min(fastest[name], Number(process.hrtime.bigint() - t0) / 1e9);
        await remove(`${home}/up.bin`);
      }
    }
    const { ours: upOurs, unverified: upUnverified, plain: upPlain } = fastest;
    await sequentialIrodsWrite(request, open, double.baseUrl, auth, source, `${home}/plain.bin`);
    const downOurs = await best(() => backend.download('irods://tempZone/home/alice/plain.bin', path.join(dir, 'irods-tesp.bin')));
    const downPlain = await best(async () => {
      const res = await request(`${double.baseUrl}/data-objects?op=read&lpath=${encodeURIComponent(`${home}/plain.bin`)}`, { headers: auth });
      await pipeline(res.body, createWriteStream(path.join(dir, 'irods-plain.bin')));
    });
    if (statSync(path.join(dir, 'irods-tesp.bin')).size !== SIZE) throw new Error('irods download size mismatch');
    return [
      row('irods download (HTTP API double)', downOurs, downPlain, '4 parallel 8 MiB ranged reads', 'one read of the whole object, undici'),
      row('irods upload (HTTP API double)', upOurs, upPlain, 'parallel write, 3 streams of 8 MiB chunks, calculate_checksum verified', 'sequential 8 MiB writes, one at a time, undici', RUNS + 2),
      row('irods upload without checksum verification (HTTP API double)', upUnverified, upPlain, 'parallel write, 3 streams, size check only', 'sequential 8 MiB writes, one at a time, undici', RUNS + 2),
      ...(await irodsDistantRows(source)),
    ];
  } finally {
    await backend.close();
    await unverified.close();
    await double.stop();
  }
}

/** The same upload against a double whose every write takes 25 ms longer: a server across a real link or a slow disk. */
async function irodsDistantRows(source) {
  const { request } = require('undici');
  const { open } = require('node:fs/promises');
  const double = await startIrodsDouble({ users: { alice: 'apass' }, writeDelayMs: 25 });
  const backend = makeBackend('irods', double.baseUrl);
  const lpath = '/tempZone/home/alice/distant.bin';
  try {
    const auth = await irodsLogin(request, double.baseUrl);
    const ours = await best(() => backend.upload(source, `irods://tempZone${lpath.slice('/tempZone'.length)}`));
    const plain = await best(() => sequentialIrodsWrite(request, open, double.baseUrl, auth, source, lpath));
    return [row('irods upload, each write 25 ms slower (HTTP API double)', ours, plain, 'parallel write, 3 streams of 8 MiB chunks, calculate_checksum verified', 'sequential 8 MiB writes, one at a time, undici')];
  } finally {
    await backend.close();
    await double.stop();
  }
}

async function run() {
  const dir = tempDir('tesp-bench-storage-');
  const source = path.join(dir, 'source.bin');
  await makeSource(source);
  const rows = [];
  try {
    if (await listening(7480)) rows.push(...(await s3Rows(dir, source)));
    else rows.push({ name: 's3 transfers', tesp: 'skipped: no Ceph RGW on 127.0.0.1:7480 (docker/start-ceph-rgw.sh)', baseline: '', ratio: '' });
    if (await listening(FTP.port)) rows.push(...(await ftpRows(dir, source)));
    else rows.push({ name: 'ftp transfers', tesp: 'skipped: no vsftpd on 127.0.0.1:2121 (docker/start-vsftpd.sh)', baseline: '', ratio: '' });
    rows.push(...(await irodsRows(dir, source)));
    rows.forEach((r) => console.log(JSON.stringify(r)));
    return rows;
  } finally {
    removeDir(dir);
  }
}

module.exports = { run, best, RUNS, makeBackend, makeSource, listening, RGW, FTP };
if (require.main === module) run().then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });

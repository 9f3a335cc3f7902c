// Peak RSS while tesp moves a 1 GiB file per scheme (S3 to Ceph RGW, FTP to vsftpd, iRODS to the HTTP API double):
// each scheme runs in a fresh Node process that uploads the file and downloads it back through tesp's backend,
// sampling its RSS every 10 ms; the increase over the RSS before the transfers is compared with the 128 MiB bound.
'use strict';
const { spawn, execFileSync } = require('node:child_process');
const { chownSync, mkdirSync, statSync } = require('node:fs');
const path = require('node:path');
const { tempDir, removeDir, fmt, startIrodsDouble } = require('./lib');
const { makeBackend, makeSource, listening, RGW, FTP } = require('./storage-transfer');

const SIZE = 1024 * 1024 * 1024;
const LIMIT = 128 * 1024 * 1024;

/** In the child: one upload and one download, returning the peak RSS increase over the RSS before them. */
async function measure({ scheme, url, source, local, irodsBaseUrl }) {
  const backend = makeBackend(scheme, irodsBaseUrl);
  try {
    global.gc?.();
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10);
    await backend.upload(source, url);
    await backend.download(url, local);
    clearInterval(sampler);
    if (statSync(local).size !== SIZE) throw new Error(`${scheme}: downloaded ${statSync(local).size} bytes, expected ${SIZE}`);
    return peak - before;
  } finally {
    await backend.close?.();
  }
}

function inChild(job) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', __filename, JSON.stringify(job)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.once('exit', (code) => (code === 0 ? resolve(Number(out.trim())) : reject(new Error(`${job.scheme} memory run exited with ${code}`))));
  });
}

function row(scheme, increase) {
  return {
    name: `${scheme}: peak RSS increase while uploading and downloading 1 GiB`,
    tesp: `${fmt(increase / 2 ** 20, 1)} MiB`,
    baseline: 'limit 128 MiB',
    ratio: `${fmt(increase / LIMIT, 2)} × limit`,
  };
}

async function run() {
  const dir = tempDir('tesp-bench-memory-');
  const source = path.join(dir, 'source.bin');
  await makeSource(source, SIZE);
  const rows = [];
  try {
    if (await listening(7480)) {
      const { S3Client, CreateBucketCommand, DeleteBucketCommand, DeleteObjectCommand } = require('@aws-sdk/client-s3');
      const client = new S3Client({ endpoint: RGW.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: RGW });
      const bucket = `tesp-memory-${Date.now()}`;
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      try {
        rows.push(row('s3 (Ceph RGW)', await inChild({ scheme: 's3', url: `s3://${bucket}/big.bin`, source, local: path.join(dir, 's3.bin') })));
      } finally {
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'big.bin' })).catch(() => undefined);
        await client.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => undefined);
        client.destroy();
        removeDir(path.join(dir, 's3.bin'));
      }
    }
    if (await listening(FTP.port)) {
      const name = `memory-${Date.now()}`;
      const remoteDir = path.join(FTP.home, 'data', name);
      mkdirSync(remoteDir);
      const uid = Number(execFileSync('id', ['-u', FTP.user], { encoding: 'utf8' }));
      chownSync(remoteDir, uid, uid);
      try {
        rows.push(row('ftp (vsftpd)', await inChild({ scheme: 'ftp', url: `ftp://127.0.0.1:${FTP.port}/data/${name}/big.bin`, source, local: path.join(dir, 'ftp.bin') })));
      } finally {
        removeDir(remoteDir);
        removeDir(path.join(dir, 'ftp.bin'));
      }
    }
    const double = await startIrodsDouble({ users: { alice: 'apass' } });
    try {
      rows.push(row('irods (HTTP API double)', await inChild({ scheme: 'irods', url: 'irods://tempZone/home/alice/big.bin', source, local: path.join(dir, 'irods.bin'), irodsBaseUrl: double.baseUrl })));
    } finally {
      await double.stop();
    }
    rows.forEach((r) => console.log(JSON.stringify(r)));
    return rows;
  } finally {
    removeDir(dir);
  }
}

module.exports = { run };
if (require.main === module) {
  const job = process.argv[2];
  const work = job ? measure(JSON.parse(job)).then((increase) => console.log(String(increase))) : run();
  work.then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });
}

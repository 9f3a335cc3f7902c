// SFTP: tesp's backend (parallel ranged reads and positional writes over one handle) against one plain sequential
// stream of the same file with the same library (ssh2), and the LEXIS comparison: a file streamed from SFTP to
// iRODS chunk by chunk (no staging area) against the same file downloaded in parallel to local disk and then
// uploaded in parallel. A real OpenSSH server on loopback (started here from test/support/sshd.ts) and the iRODS
// HTTP API double in its own process; all measured in the same run.
'use strict';
const { createReadStream, createWriteStream, readFileSync, rmSync } = require('node:fs');
const Module = require('node:module');
const path = require('node:path');
const { pipeline } = require('node:stream/promises');
const ts = require('typescript');
const { Client } = require('ssh2');
const { tempDir, removeDir, fmt, ROOT, startIrodsDouble, watchdog } = require('./lib');
const { best, makeBackend, makeSource } = require('./storage-transfer');

const SIZE = Number(process.env.BENCH_SFTP_MB ?? 64) * 1024 * 1024;
const { RUNS } = require('./storage-transfer');

/** test/support/sshd.ts, compiled on the fly as irods-double-server.js does with the iRODS double. */
function loadSshdHarness() {
  const file = path.join(ROOT, 'test', 'support', 'sshd.ts');
  const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } });
  const harness = new Module(file, module);
  harness.filename = file;
  harness.paths = module.paths;
  harness._compile(outputText, file);
  return harness.exports;
}

/** One ssh2 SFTP session for the plain baseline. */
function plainSession(sshd) {
  return new Promise((resolve, reject) => {
    const client = new Client();
    client.once('error', reject);
    client.once('ready', () => client.sftp((err, sftp) => (err ? reject(err) : resolve({ client, sftp }))));
    client.connect({ host: '127.0.0.1', port: sshd.port, username: sshd.user, privateKey: readFileSync(sshd.key.file), hostVerifier: () => true });
  });
}

async function run() {
  const done = watchdog('sftp-transfer', 20 * 60 * 1000);
  const { sshdAvailable, startSshd } = loadSshdHarness();
  if (!sshdAvailable()) {
    done();
    const row = { name: 'sftp transfers', tesp: 'skipped: no OpenSSH server (apt-get install openssh-server)', baseline: '', ratio: '' };
    console.log(JSON.stringify(row));
    return [row];
  }
  const dir = tempDir('tesp-bench-sftp-');
  const sshd = await startSshd();
  const irods = await startIrodsDouble();
  const plain = await plainSession(sshd);
  try {
    const { SftpStorageBackend } = require(path.join(ROOT, 'dist', 'storage', 'sftp', 'sftp-storage.backend.js'));
    const sftp = new SftpStorageBackend(
      { hosts: [`127.0.0.1:${sshd.port}=${sshd.user};key_file=${sshd.key.file}`], known_hosts: sshd.knownHosts, trust_unknown_hosts: false, timeout_ms: 30000, retries: 5, retry_base_ms: 500, retry_max_ms: 30000, parallel_requests: 8 },
      { partBytes: 8 * 1024 * 1024, parallel: 4 },
      {},
      () => undefined,
    );
    const irodsBackend = makeBackend('irods', irods.baseUrl);
    const source = path.join(dir, 'source.bin');
    await makeSource(source, SIZE);
    const remote = path.join(sshd.dataDir, 'source.bin');
    await pipeline(createReadStream(source), createWriteStream(remote));
    const url = (p) => `sftp://127.0.0.1:${sshd.port}${p}`;
    const mb = SIZE / 2 ** 20;

    const downOurs = await best(() => sftp.download(url(remote), path.join(dir, 'down.bin')));
    const downPlain = await best(() => pipeline(plain.sftp.createReadStream(remote), createWriteStream(path.join(dir, 'plain-down.bin'))));
    const upOurs = await best(() => sftp.upload(source, url(path.join(sshd.dataDir, 'up.bin'))));
    const upPlain = await best(() => pipeline(createReadStream(source), plain.sftp.createWriteStream(path.join(sshd.dataDir, 'plain-up.bin'))));
    const streamed = await best(async () => {
      const body = await sftp.openRead(url(remote));
      await irodsBackend.uploadStream(body, 'irods://tempZone/home/alice/streamed.bin', { size: SIZE });
    });
    const staged = await best(async () => {
      const local = path.join(dir, 'staged.bin');
      await sftp.download(url(remote), local);
      await irodsBackend.upload(local, 'irods://tempZone/home/alice/staged.bin');
      rmSync(local, { force: true });
    });
    const rows = [
      { name: `sftp download, ${mb} MiB (best of ${RUNS})`, tesp: `${fmt(mb / downOurs, 0)} MiB/s (4 parallel 8 MiB parts, 8 requests in flight)`, baseline: `ssh2 createReadStream, one sequential stream: ${fmt(mb / downPlain, 0)} MiB/s`, ratio: `${fmt(downPlain / downOurs, 2)} × baseline throughput` },
      { name: `sftp upload, ${mb} MiB (best of ${RUNS})`, tesp: `${fmt(mb / upOurs, 0)} MiB/s (parallel positional writes, SHA-256 while reading, temporary name renamed)`, baseline: `ssh2 createWriteStream, one sequential stream: ${fmt(mb / upPlain, 0)} MiB/s`, ratio: `${fmt(upPlain / upOurs, 2)} × baseline throughput` },
      { name: `sftp → irods (HTTP API double), ${mb} MiB (best of ${RUNS})`, tesp: `${fmt(mb / streamed, 0)} MiB/s streamed chunk by chunk, nothing on local disk`, baseline: `parallel download to local disk, then parallel upload: ${fmt(mb / staged, 0)} MiB/s`, ratio: `${fmt(staged / streamed, 2)} × baseline throughput` },
    ];
    rows.forEach((r) => console.log(JSON.stringify(r)));
    return rows;
  } finally {
    plain.client.end();
    await irods.stop();
    await sshd.stop();
    removeDir(dir);
    done();
  }
}

module.exports = { run };
if (require.main === module) run().then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });

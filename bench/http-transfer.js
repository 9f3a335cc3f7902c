// HTTP throughput: tesp's HttpStorageBackend downloading (parallel ranged parts on the transfer engine) against a
// plain single-stream undici GET of the same bytes from the same local server, and uploading (one PUT, SHA-256
// while streaming) against a plain undici PUT of the file; plus the peak RSS increase of the process while tesp
// downloads 1 GiB. The server runs in its own process, serves a file from disk and writes PUT bodies to disk.
'use strict';
const { spawn } = require('node:child_process');
const { createReadStream, createWriteStream, writeFileSync } = require('node:fs');
const path = require('node:path');
const { pipeline } = require('node:stream/promises');
const { request } = require('undici');
const { tempDir, removeDir, fmt, ROOT } = require('./lib');

const SIZE = Number(process.env.BENCH_TRANSFER_MB ?? 1024) * 1024 * 1024;
const RUNS = 3;

async function startFileServer(dir) {
  const script = `
    const http = require('node:http');
    const fs = require('node:fs');
    const file = process.argv[1];
    const size = fs.statSync(file).size;
    const server = http.createServer((req, res) => {
      if (req.method === 'PUT') {
        const out = fs.createWriteStream(file + '.put');
        req.pipe(out);
        out.on('finish', () => res.writeHead(201).end());
        return;
      }
      const m = /^bytes=(\\d+)-(\\d*)$/.exec(req.headers.range || '');
      const start = m ? Number(m[1]) : 0;
      const end = m && m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
      const headers = { 'accept-ranges': 'bytes', etag: '"bench"', 'content-length': end - start + 1 };
      if (m) res.writeHead(206, { ...headers, 'content-range': 'bytes ' + start + '-' + end + '/' + size });
      else res.writeHead(200, headers);
      fs.createReadStream(file, { start, end }).pipe(res);
    });
    server.listen(0, '127.0.0.1', () => console.log(server.address().port));`;
  const file = path.join(dir, 'source.bin');
  // Write the source in 8 MiB chunks of varied bytes.
  const out = createWriteStream(file);
  const chunk = Buffer.alloc(8 * 1024 * 1024);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 131) % 251;
  for (let written = 0; written < SIZE; written += chunk.length) {
    if (!out.write(chunk.subarray(0, Math.min(chunk.length, SIZE - written)))) await new Promise((r) => out.once('drain', r));
  }
  await new Promise((r) => out.end(r));
  const child = spawn(process.execPath, ['-e', script, file], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve) => child.stdout.once('data', (d) => resolve(Number(String(d).trim()))));
  return { url: `http://127.0.0.1:${port}/source.bin`, stop: () => child.kill('SIGKILL') };
}

async function plainDownload(url, destination) {
  const res = await request(url, { headers: { 'accept-encoding': 'identity' } });
  await pipeline(res.body, createWriteStream(destination));
}

async function plainUpload(source, url) {
  const res = await request(url, { method: 'PUT', headers: { 'content-length': String(SIZE) }, body: createReadStream(source) });
  await res.body.dump();
  if (res.statusCode >= 300) throw new Error(`plain PUT answered ${res.statusCode}`);
}

async function run() {
  const dir = tempDir('tesp-bench-transfer-');
  const server = await startFileServer(dir);
  const { HttpStorageBackend } = require(path.join(ROOT, 'dist', 'storage', 'http', 'http-storage.backend.js'));
  const settings = { max_redirects: 5, retries: 5, retry_base_ms: 500, retry_max_ms: 30000, connect_timeout_ms: 10000, idle_timeout_ms: 60000, max_input_bytes: 0, allow_private_addresses: true, allowed_private_cidrs: [] };
  const backend = new HttpStorageBackend(settings, { partBytes: 8 * 1024 * 1024, parallel: 4 });
  try {
    const ours = [];
    const plain = [];
    let peakIncrease = 0;
    for (let i = 0; i < RUNS; i++) {
      global.gc?.();
      const before = process.memoryUsage().rss;
      let peak = before;
      const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10);
      let t0 = process.hrtime.bigint();
      await backend.download(server.url, path.join(dir, 'tesp.bin'));
      ours.push(Number(process.hrtime.bigint() - t0) / 1e9);
      clearInterval(sampler);
      peakIncrease = Math.max(peakIncrease, peak - before);
      removeDir(path.join(dir, 'tesp.bin'));
      t0 = process.hrtime.bigint();
      await plainDownload(server.url, path.join(dir, 'plain.bin'));
      plain.push(Number(process.hrtime.bigint() - t0) / 1e9);
      removeDir(path.join(dir, 'plain.bin'));
    }
    const source = path.join(dir, 'source.bin');
    const putUrl = server.url.replace('source.bin', 'upload.bin');
    const upOurs = [];
    const upPlain = [];
    for (let i = 0; i < RUNS; i++) {
      let t0 = process.hrtime.bigint();
      await backend.upload(source, putUrl);
      upOurs.push(Number(process.hrtime.bigint() - t0) / 1e9);
      t0 = process.hrtime.bigint();
      await plainUpload(source, putUrl);
      upPlain.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    const mb = SIZE / 2 ** 20;
    const best = (xs) => Math.min(...xs);
    const rows = [
      {
        name: `http download, ${mb} MiB from a local server (best of ${RUNS})`,
        tesp: `${fmt(mb / best(ours), 0)} MiB/s (4 parallel 8 MiB parts)`,
        baseline: `plain undici GET, one stream: ${fmt(mb / best(plain), 0)} MiB/s`,
        ratio: `${fmt(best(plain) / best(ours), 2)} × baseline throughput`,
      },
      {
        name: `http upload, ${mb} MiB to a local server (best of ${RUNS})`,
        tesp: `${fmt(mb / best(upOurs), 0)} MiB/s (one PUT, SHA-256 while streaming)`,
        baseline: `plain undici PUT of a file stream: ${fmt(mb / best(upPlain), 0)} MiB/s`,
        ratio: `${fmt(best(upPlain) / best(upOurs), 2)} × baseline throughput`,
      },
      {
        name: `http download, peak RSS increase while moving ${mb} MiB`,
        tesp: `${fmt(peakIncrease / 2 ** 20, 1)} MiB`,
        baseline: 'limit 128 MiB',
        ratio: `${fmt(peakIncrease / (128 * 2 ** 20), 2)} × limit`,
      },
    ];
    rows.forEach((r) => console.log(JSON.stringify(r)));
    return rows;
  } finally {
    await backend.close();
    server.stop();
    removeDir(dir);
  }
}

module.exports = { run };
if (require.main === module) run().then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });

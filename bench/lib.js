// Shared helpers for the benchmarks: start tesp or a bare baseline server as child processes, drive load with
// undici, summarise latencies. Everything talks to 127.0.0.1 only and stops by itself.
'use strict';
const { spawn, execFileSync } = require('node:child_process');
const { mkdtempSync, readFileSync, rmSync, writeFileSync } = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { Pool } = require('undici');

const ROOT = path.resolve(__dirname, '..');
const children = new Set();
const tempDirs = new Set();

// Whatever way the run ends (done, error, Ctrl-C, watchdog), no child process or temp dir is left behind.
function cleanUp() {
  for (const child of children) if (!exited(child)) child.kill('SIGKILL');
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
}
process.on('exit', cleanUp);
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(1));

function tempDir(prefix) {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

function removeDir(dir) {
  rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

/** Ends the whole process (children and temp dirs cleaned by the exit hook) if `label` runs past `ms`. */
function watchdog(label, ms) {
  const timer = setTimeout(() => {
    console.error(`${label}: still running after ${Math.round(ms / 1000)} s, giving up`);
    process.exit(2);
  }, ms);
  timer.unref();
  return () => clearTimeout(timer);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function waitForHttp(url, child, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exited(child)) throw new Error(`process exited (${child.exitCode ?? child.signalCode}) before ${url} answered`);
    try {
      const res = await fetch(url);
      if (res.status < 500) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms`);
}

/**
 * Starts dist/main.js with settings as TESP_* variables; resolves to {base, stop}. `root`: another built checkout
 * of tesp to run instead of this one (an older commit, to compare against). A variable set to undefined in `env`
 * is left out (an older build refuses settings it does not know).
 */
async function startTesp(env, root = ROOT) {
  const port = await freePort();
  const settings = { TESP_SERVER__HOST: '127.0.0.1', TESP_SERVER__PORT: String(port), TESP_LOGGING__LEVEL: 'warn',
    // The benches' servers are on loopback, which tasks may not reach by default.
    TESP_STORAGE__HTTP__ALLOW_PRIVATE_ADDRESSES: 'true', TESP_STORAGE__FTP__ALLOW_PRIVATE_ADDRESSES: 'true', ...env };
  const child = spawn(process.execPath, [path.join(root, 'dist', 'main.js')], {
    env: { PATH: process.env.PATH, ...Object.fromEntries(Object.entries(settings).filter(([, value]) => value !== undefined)) },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.add(child);
  const origin = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${origin}/ga4gh/tes/v1/service-info`, child);
  } catch (err) {
    await stop(child);
    throw err;
  }
  return { origin, base: `${origin}/ga4gh/tes/v1`, pid: child.pid, stop: () => stop(child) };
}

/** CPU time (user + system, ms) a process's main thread, or all its threads, have used so far, from /proc (Linux; clock ticks of 10 ms). */
function cpuMs(pid, mainThreadOnly) {
  const stat = readFileSync(mainThreadOnly ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of stat(5); `fields` starts at field 3.
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

/**
 * Runs `measure` (a load against the server in process `pid`) and adds what each side spent per request, in µs of
 * CPU: the server's main thread (`mainCpuUs`), all its threads (`serverCpuUs`), and this process, the load client
 * (`clientCpuUs`). Less noisy than throughput on a shared machine, and it tells where the cores went.
 */
async function withCpu(pid, measure) {
  const main = cpuMs(pid, true);
  const server = cpuMs(pid, false);
  const client = process.cpuUsage();
  const result = await measure();
  const used = process.cpuUsage(client);
  const requests = result.latencies.length;
  return {
    ...result,
    mainCpuUs: ((cpuMs(pid, true) - main) * 1000) / requests,
    serverCpuUs: ((cpuMs(pid, false) - server) * 1000) / requests,
    clientCpuUs: (used.user + used.system) / requests,
  };
}

/** Starts `tesp runner` (dist/main.js runner) with settings as TESP_* variables; resolves to {port, entry(name), stop}. */
async function startRunner(env) {
  const port = await freePort();
  const token = 'bench-token';
  const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'main.js'), 'runner'], {
    env: { PATH: process.env.PATH, TESP_RUNNER__HOST: '127.0.0.1', TESP_RUNNER__PORT: String(port), TESP_RUNNER__PRIVATE_TOKEN: token, TESP_LOGGING__LEVEL: 'warn',
      // The benches' servers are on loopback, which tasks may not reach by default.
      TESP_STORAGE__HTTP__ALLOW_PRIVATE_ADDRESSES: 'true', TESP_STORAGE__FTP__ALLOW_PRIVATE_ADDRESSES: 'true', ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.add(child);
  try {
    await waitForHttp(`http://127.0.0.1:${port}/healthz?private_token=${token}`, child);
  } catch (err) {
    await stop(child);
    throw err;
  }
  return { port, entry: (name) => `${name}=http://${token}@127.0.0.1:${port}/`, stop: () => stop(child) };
}

/** A bare node:http server in its own process that reads the request body and answers `body` (a JSON string). */
async function startBaseline(body) {
  const port = await freePort();
  const script = `
    const http = require('node:http');
    const { randomUUID } = require('node:crypto');
    const fixed = require('node:fs').readFileSync(process.env.BODY_FILE, 'utf8');
    http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const out = fixed === '__ID__' ? JSON.stringify({ id: randomUUID() }) : fixed;
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
        res.end(out);
      });
    }).listen(${port}, '127.0.0.1');`;
  const dir = tempDir('tesp-bench-body-');
  const bodyFile = path.join(dir, 'body.json');
  writeFileSync(bodyFile, body);
  const child = spawn(process.execPath, ['-e', script], { env: { BODY_FILE: bodyFile }, stdio: ['ignore', 'ignore', 'inherit'] });
  children.add(child);
  const origin = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(origin, child);
  } catch (err) {
    await stop(child);
    removeDir(dir);
    throw err;
  }
  return {
    origin,
    pid: child.pid,
    stop: async () => {
      await stop(child);
      removeDir(dir);
    },
  };
}

/**
 * The least a durable create needs, as a bare node:http server in its own process: parse the JSON body, give it a
 * random id, insert one row (id, body) into SQLite in WAL mode with synchronous=FULL, and answer {"id"} once the
 * row is committed. The inserts run in group-commit batches on a worker thread, as tesp's do: the floor under
 * tesp's create, without its validation, indexes, routing or framework. `synchronous: 'OFF'` is the same server
 * without the fsync of each commit: what the disk's flush costs the floor.
 */
async function startDurableBaseline({ synchronous = 'FULL' } = {}) {
  const port = await freePort();
  const dir = tempDir('tesp-bench-durable-');
  const writer = `
    const Database = require(process.env.SQLITE_MODULE);
    const { parentPort, workerData } = require('node:worker_threads');
    const db = new Database(workerData.file);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = ' + workerData.synchronous);
    db.exec('CREATE TABLE tasks (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, body TEXT NOT NULL)');
    const insert = db.prepare('INSERT INTO tasks (id, body) VALUES (?, ?)');
    const commit = db.transaction((rows) => { for (const [id, body] of rows) insert.run(id, body); });
    let pending = [];
    const flush = () => { const rows = pending; pending = []; commit.immediate(rows); parentPort.postMessage(rows.length); };
    parentPort.on('message', (rows) => { if (pending.length === 0) setImmediate(flush); pending.push(...rows); });`;
  const script = `
    const http = require('node:http');
    const { randomUUID } = require('node:crypto');
    const { Worker } = require('node:worker_threads');
    const worker = new Worker(process.env.WRITER, { eval: true, workerData: { file: process.env.DB_FILE, synchronous: process.env.SYNCHRONOUS } });
    let outbox = [];
    const waiting = [];
    worker.on('message', (count) => { for (const answer of waiting.splice(0, count)) answer(); });
    http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        if (req.method !== 'POST') return res.end('{}');
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        const id = randomUUID();
        const out = JSON.stringify({ id });
        if (outbox.length === 0) setImmediate(() => { worker.postMessage(outbox); outbox = []; });
        outbox.push([id, JSON.stringify(body)]);
        waiting.push(() => {
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
          res.end(out);
        });
      });
    }).listen(${port}, '127.0.0.1');`;
  const child = spawn(process.execPath, ['-e', script], {
    env: { WRITER: writer, DB_FILE: path.join(dir, 'tasks.db'), SYNCHRONOUS: synchronous, SQLITE_MODULE: require.resolve('better-sqlite3', { paths: [ROOT] }) },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.add(child);
  const origin = `http://127.0.0.1:${port}`;
  const stopAll = async () => {
    await stop(child);
    removeDir(dir);
  };
  try {
    await waitForHttp(origin, child);
  } catch (err) {
    await stopAll();
    throw err;
  }
  return { origin, pid: child.pid, stop: stopAll };
}

/** The iRODS HTTP API double (test/doubles) in its own process; resolves to {baseUrl, stop}. */
async function startIrodsDouble(options = {}) {
  const child = spawn(process.execPath, [path.join(__dirname, 'irods-double-server.js'), JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  const baseUrl = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      if (out.includes('\n')) resolve(out.trim());
    });
    child.once('exit', (code) => reject(new Error(`the iRODS double exited with ${code}`)));
  });
  return { baseUrl, stop: () => stop(child) };
}

function exited(child) {
  return child.exitCode !== null || child.signalCode !== null;
}

function stop(child) {
  return new Promise((resolve) => {
    if (exited(child)) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 5000).unref();
  });
}

/**
 * Sends `total` requests with `concurrency` in flight; returns {seconds, perSecond, latencies}. With `until` (a
 * promise) instead of `total`, sends until it settles.
 */
async function load(origin, { method, path: requestPath, body, headers = {}, expectStatus = 200, total = Infinity, concurrency, until }) {
  const pool = new Pool(origin, { connections: concurrency, pipelining: 1, headersTimeout: 30000, bodyTimeout: 30000 });
  const latencies = [];
  let sent = 0;
  let failures = 0;
  let stopped = false;
  until?.finally(() => (stopped = true));
  const started = process.hrtime.bigint();
  const worker = async () => {
    while (sent < total && !stopped) {
      sent += 1;
      const t0 = process.hrtime.bigint();
      const res = await pool.request({ method, path: requestPath, body, headers: body ? { 'content-type': 'application/json', ...headers } : headers });
      await res.body.text();
      if (res.statusCode !== expectStatus) failures += 1;
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await pool.close();
  if (failures) throw new Error(`${failures} of ${sent} requests to ${origin}${requestPath} failed`);
  return { seconds, perSecond: sent / seconds, latencies };
}

/** POSTs a task to tesp at `base` and polls until it ends; resolves to {ms, id} once it is COMPLETE, else throws. */
async function submitToComplete(base, task) {
  const t0 = process.hrtime.bigint();
  const created = await fetch(`${base}/tasks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(task) });
  if (created.status !== 200) throw new Error(`POST /tasks: HTTP ${created.status} ${await created.text()}`);
  const { id } = await created.json();
  let state;
  for (let polls = 0; polls < 3000; polls++) {
    state = (await (await fetch(`${base}/tasks/${id}?view=MINIMAL`)).json()).state;
    if (['COMPLETE', 'EXECUTOR_ERROR', 'SYSTEM_ERROR', 'CANCELED'].includes(state)) break;
    await sleep(20);
  }
  if (state !== 'COMPLETE') throw new Error(`task ${id} ended ${state ?? 'nowhere'}`);
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, id };
}

function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function median(values) {
  return percentile(values, 50);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function dockerAvailable() {
  try {
    execFileSync('docker', ['info'], { stdio: 'ignore', timeout: 15000 });
    return true;
  } catch {
    return false;
  }
}

function machine() {
  const cpus = os.cpus();
  return `${os.type()} ${os.release()}, ${cpus.length} × ${cpus[0]?.model.trim()}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Node ${process.version}`;
}

const fmt = (n, digits = 1) => Number(n).toFixed(digits);

module.exports = {
  ROOT, tempDir, removeDir, watchdog, startTesp, withCpu, startBaseline, startDurableBaseline, startIrodsDouble, startRunner, load, submitToComplete, percentile, median, sleep, dockerAvailable, machine, fmt };

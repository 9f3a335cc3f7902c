// List latency with 100 000 stored tasks at MINIMAL, BASIC and FULL, with filters and deep in the paging, versus a
// bare Node HTTP server answering a precomputed body of the same bytes. Tasks are written straight into the SQLite
// store first; tesp is then started on that data dir with dispatching held off, so only listing is measured.
'use strict';
const path = require('node:path');
const { randomUUID } = require('node:crypto');
const { tempDir, removeDir, watchdog, startTesp, startBaseline, load, percentile, median, fmt, ROOT } = require('./lib');

const TASKS = Number(process.env.BENCH_LIST_TASKS ?? 100000);
const REQUESTS = 200;
const WARMUP = 20;
const WALKS = 20;
const STATES = ['COMPLETE', 'COMPLETE', 'COMPLETE', 'EXECUTOR_ERROR', 'SYSTEM_ERROR', 'CANCELED', 'QUEUED'];
const API = '/ga4gh/tes/v1';

function record(j, t0) {
  const state = STATES[j % STATES.length];
  const at = (ms) => new Date(t0 + j * 10 + ms).toISOString();
  const stdout = `processing sample ${j}\n` + 'line of executor output\n'.repeat(12);
  const exitCode = state === 'EXECUTOR_ERROR' ? 1 : 0;
  const ended = state !== 'QUEUED';
  return {
    id: randomUUID(),
    state,
    name: `sample-${j % 100}-task-${j}`,
    description: `md5 of input ${j}`,
    creation_time: at(0),
    inputs: [{ path: '/data/in.txt', url: `https://example.org/data/${j}.txt`, type: 'FILE' }],
    outputs: [{ path: '/data/out.txt', url: `file:///results/${j}/out.txt`, type: 'FILE' }],
    resources: { cpu_cores: 1, ram_gb: 1 },
    executors: [{ image: 'alpine:latest', command: ['sh', '-c', 'md5sum /data/in.txt > /data/out.txt'] }],
    tags: { project: `p${j % 10}`, batch: String(Math.floor(j / 1000)) },
    logs: ended
      ? [
          {
            start_time: at(10),
            end_time: at(1000),
            logs: state === 'SYSTEM_ERROR' ? [] : [{ start_time: at(20), end_time: at(900), stdout, stderr: exitCode ? 'md5sum: read error\n' : '', exit_code: exitCode }],
            outputs: state === 'COMPLETE' ? [{ url: `file:///results/${j}/out.txt`, path: '/data/out.txt', size_bytes: '45' }] : [],
            system_logs: state === 'SYSTEM_ERROR' ? ['input https://example.org/data/x.txt: HTTP 503 after 5 attempts'] : [],
          },
        ]
      : [],
  };
}

async function populate(dataDir) {
  const { SqliteTaskRepository } = require(path.join(ROOT, 'dist', 'persistence', 'sqlite', 'sqlite-task.repository.js'));
  const repo = new SqliteTaskRepository(path.join(dataDir, 'tesp.sqlite'));
  const t0 = Date.now() - TASKS * 10;
  const started = Date.now();
  try {
    // 1 000 inserts per event-loop turn: the store's group commit writes each batch in one transaction.
    for (let i = 0; i < TASKS; i += 1000) {
      const batch = [];
      for (let j = i; j < Math.min(TASKS, i + 1000); j++) batch.push(repo.insert(record(j, t0), ''));
      await Promise.all(batch);
    }
  } finally {
    await repo.close();
  }
  console.error(`list-latency: stored ${TASKS} tasks in ${fmt((Date.now() - started) / 1000)} s`);
}

async function getJson(origin, url) {
  const res = await fetch(origin + url);
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET ${url}: HTTP ${res.status} ${text.slice(0, 200)}`);
  return { text, json: JSON.parse(text) };
}

/** The URL of the n-th MINIMAL page (1-based), found by following next_page_token. */
async function nthPageUrl(origin, n) {
  let url = `${API}/tasks?view=MINIMAL`;
  for (let page = 1; page < n; page++) {
    const { json } = await getJson(origin, url);
    if (!json.next_page_token) throw new Error(`no page ${page + 1}`);
    url = `${API}/tasks?view=MINIMAL&page_token=${encodeURIComponent(json.next_page_token)}`;
  }
  return url;
}

/** Wall time of following next_page_token from the first page to the tenth, `WALKS` times. */
async function walkTenPages(origin) {
  const times = [];
  for (let w = 0; w < WALKS + 1; w++) {
    const t0 = process.hrtime.bigint();
    await nthPageUrl(origin, 11);
    if (w > 0) times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return times;
}

async function compare(tesp, label, url) {
  const { text } = await getJson(tesp.origin, url);
  const baseline = await startBaseline(text);
  try {
    await load(tesp.origin, { method: 'GET', path: url, total: WARMUP, concurrency: 1 });
    const ours = await load(tesp.origin, { method: 'GET', path: url, total: REQUESTS, concurrency: 1 });
    await load(baseline.origin, { method: 'GET', path: '/', total: WARMUP, concurrency: 1 });
    const bare = await load(baseline.origin, { method: 'GET', path: '/', total: REQUESTS, concurrency: 1 });
    const p50 = percentile(ours.latencies, 50);
    const b50 = percentile(bare.latencies, 50);
    const row = {
      name: `list ${label} (${TASKS} tasks, ${fmt(Buffer.byteLength(text) / 1024, 0)} KiB answer, ${REQUESTS} sequential requests)`,
      tesp: `p50 ${fmt(p50, 2)} ms, p99 ${fmt(percentile(ours.latencies, 99), 2)} ms`,
      baseline: `bare node:http, same body: p50 ${fmt(b50, 2)} ms, p99 ${fmt(percentile(bare.latencies, 99), 2)} ms`,
      ratio: `${fmt(p50 / b50, 2)} × baseline latency (p50)`,
    };
    console.log(JSON.stringify(row));
    return row;
  } finally {
    await baseline.stop();
  }
}

async function run() {
  const done = watchdog('list-latency', 15 * 60 * 1000);
  const dataDir = tempDir('tesp-bench-list-');
  let tesp;
  try {
    await populate(dataDir);
    tesp = await startTesp({ TESP_DATA_DIR: dataDir, TESP_COMPUTE__LOCAL__MAX_CONCURRENT_TASKS: '0', TESP_SCHEDULER__POLL_INTERVAL_MS: '60000' });
    const cases = [
      ['MINIMAL, first page of 256', `${API}/tasks?view=MINIMAL`],
      ['FULL, first page of 256', `${API}/tasks?view=FULL`],
      ['BASIC, state=EXECUTOR_ERROR', `${API}/tasks?view=BASIC&state=EXECUTOR_ERROR`],
      ['MINIMAL, name_prefix=sample-42-', `${API}/tasks?view=MINIMAL&name_prefix=sample-42-`],
      ['MINIMAL, tag_key=project&tag_value=p7', `${API}/tasks?view=MINIMAL&tag_key=project&tag_value=p7`],
      ['MINIMAL, 10th page via next_page_token', await nthPageUrl(tesp.origin, 10)],
    ];
    const rows = [];
    for (const [label, url] of cases) rows.push(await compare(tesp, label, url));

    // Following the tokens from page 1 to page 10, against ten sequential requests to the bare server.
    const { text } = await getJson(tesp.origin, cases[0][1]);
    const baseline = await startBaseline(text);
    try {
      const ours = await walkTenPages(tesp.origin);
      // Same client work on the baseline: ten sequential fetches, each answer read and parsed.
      const bare = [];
      for (let w = 0; w < WALKS + 1; w++) {
        const t0 = process.hrtime.bigint();
        for (let page = 0; page < 10; page++) await getJson(baseline.origin, '/');
        if (w > 0) bare.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
      const row = {
        name: `list MINIMAL, pages 1 to 10 following next_page_token (${WALKS} walks)`,
        tesp: `median ${fmt(median(ours), 1)} ms per walk`,
        baseline: `bare node:http, 10 requests for the same body: median ${fmt(median(bare), 1)} ms`,
        ratio: `${fmt(median(ours) / median(bare), 2)} × baseline latency`,
      };
      console.log(JSON.stringify(row));
      rows.push(row);
    } finally {
      await baseline.stop();
    }
    return rows;
  } finally {
    await tesp?.stop();
    removeDir(dataDir);
    done();
  }
}

module.exports = { run };
if (require.main === module) run().catch((err) => { console.error(err); process.exit(1); });

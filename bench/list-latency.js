// List latency with 100 000 stored tasks at MINIMAL and FULL (and with filters), versus a bare Node HTTP server
// answering a precomputed body of the same size. Tasks are written straight into the SQLite store first.
'use strict';
const path = require('node:path');
const { randomUUID } = require('node:crypto');
const { tempDir, removeDir, startTesp, startBaseline, load, percentile, fmt, ROOT } = require('./lib');

const TASKS = Number(process.env.BENCH_LIST_TASKS ?? 100000);
const REQUESTS = 200;
const STATES = ['COMPLETE', 'COMPLETE', 'COMPLETE', 'EXECUTOR_ERROR', 'SYSTEM_ERROR', 'CANCELED', 'QUEUED'];

async function populate(dataDir) {
  const { SqliteTaskRepository } = require(path.join(ROOT, 'dist', 'persistence', 'sqlite', 'sqlite-task.repository.js'));
  const repo = new SqliteTaskRepository(path.join(dataDir, 'tesp.sqlite'));
  const stdout = 'line of executor output\n'.repeat(12);
  const t0 = Date.now();
  for (let i = 0; i < TASKS; i += 1000) {
    const batch = [];
    for (let j = i; j < Math.min(TASKS, i + 1000); j++) {
      const state = STATES[j % STATES.length];
      batch.push(
        repo.insert({
          id: randomUUID(),
          state,
          name: `sample-${j % 100}-task-${j}`,
          creation_time: new Date(t0 + j).toISOString(),
          inputs: [{ path: '/data/in.txt', url: `https://example.org/data/${j}.txt`, type: 'FILE' }],
          outputs: [{ path: '/data/out.txt', url: `file:///results/${j}/out.txt`, type: 'FILE' }],
          resources: { cpu_cores: 1, ram_gb: 1 },
          executors: [{ image: 'alpine:latest', command: ['sh', '-c', 'md5sum /data/in.txt > /data/out.txt'] }],
          tags: { project: `p${j % 10}`, batch: String(Math.floor(j / 1000)) },
          logs: [
            {
              start_time: new Date(t0 + j).toISOString(),
              end_time: new Date(t0 + j + 1000).toISOString(),
              logs: [{ start_time: new Date(t0 + j).toISOString(), end_time: new Date(t0 + j + 900).toISOString(), stdout, stderr: '', exit_code: 0 }],
              outputs: [{ url: `file:///results/${j}/out.txt`, path: '/data/out.txt', size_bytes: '45' }],
              system_logs: [],
            },
          ],
        }),
      );
    }
    await Promise.all(batch);
  }
  await repo.close();
}

async function run() {
  const dataDir = tempDir('tesp-bench-list-');
  await populate(dataDir);
  const tesp = await startTesp({ TESP_DATA_DIR: dataDir, TESP_SCHEDULER__DISPATCH_DELAY_MS: '3600000', TESP_SCHEDULER__POLL_INTERVAL_MS: '60000' });
  const cases = [
    ['MINIMAL, first page of 256', '/ga4gh/tes/v1/tasks?view=MINIMAL'],
    ['FULL, first page of 256', '/ga4gh/tes/v1/tasks?view=FULL'],
    ['BASIC, state=EXECUTOR_ERROR', '/ga4gh/tes/v1/tasks?view=BASIC&state=EXECUTOR_ERROR'],
    ['MINIMAL, name_prefix', '/ga4gh/tes/v1/tasks?name_prefix=sample-42-'],
    ['MINIMAL, tag_key/tag_value', '/ga4gh/tes/v1/tasks?tag_key=project&tag_value=p7'],
  ];
  const rows = [];
  try {
    for (const [label, url] of cases) {
      const body = await (await fetch(tesp.origin + url)).text();
      const baseline = await startBaseline(body);
      try {
        await load(tesp.origin, { method: 'GET', path: url, total: 20, concurrency: 1 });
        const ours = await load(tesp.origin, { method: 'GET', path: url, total: REQUESTS, concurrency: 1 });
        await load(baseline.origin, { method: 'GET', path: '/', total: 20, concurrency: 1 });
        const bare = await load(baseline.origin, { method: 'GET', path: '/', total: REQUESTS, concurrency: 1 });
        const p50 = percentile(ours.latencies, 50);
        const b50 = percentile(bare.latencies, 50);
        rows.push({
          name: `list ${label} (${TASKS} tasks, ${(body.length / 1024).toFixed(0)} KiB answer)`,
          tesp: `p50 ${fmt(p50, 2)} ms, p99 ${fmt(percentile(ours.latencies, 99), 2)} ms`,
          baseline: `p50 ${fmt(b50, 2)} ms, p99 ${fmt(percentile(bare.latencies, 99), 2)} ms`,
          ratio: `${fmt(p50 / b50, 2)} × baseline latency`,
        });
        console.log(JSON.stringify(rows[rows.length - 1]));
      } finally {
        await baseline.stop();
      }
    }
    // Paging deep: follow next_page_token to the 10th page.
    let token;
    const t0 = process.hrtime.bigint();
    for (let page = 0; page < 10; page++) {
      const res = await (await fetch(`${tesp.origin}/ga4gh/tes/v1/tasks?view=MINIMAL${token ? `&page_token=${token}` : ''}`)).json();
      token = res.next_page_token;
    }
    console.log(JSON.stringify({ name: 'list: ten MINIMAL pages through next_page_token', tesp: `${fmt(Number(process.hrtime.bigint() - t0) / 1e6, 1)} ms in all` }));
    return rows;
  } finally {
    await tesp.stop();
    removeDir(dataDir);
  }
}

module.exports = { run };
if (require.main === module) run().catch((err) => { console.error(err); process.exit(1); });

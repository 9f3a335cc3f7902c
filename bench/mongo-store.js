// The task store on MongoDB beside SQLite, in one run: create throughput (POST /tasks at concurrency 32) and list
// latency (the first MINIMAL page of 256, and a state filter, with STORED tasks in the store) through the API. MongoDB
// is the test-only wire-protocol server (test/mongo-wire, started by docker/start-mongo-wire.sh on 127.0.0.1:27027),
// and a real mongod as well when TESP_TEST_MONGO_URL names one. SQLite, measured in the same run, is the baseline.
'use strict';
const net = require('node:net');
const { tempDir, removeDir, watchdog, startTesp, load, percentile, fmt } = require('./lib');

const CREATES = Number(process.env.BENCH_MONGO_CREATES ?? 3000);
const STORED = Number(process.env.BENCH_MONGO_STORED ?? 10000);
const LISTS = 200;
const TASK = JSON.stringify({ name: 'sample', executors: [{ image: 'alpine:latest', command: ['true'] }], tags: { bench: 'mongo' } });

function portOpen(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

async function measure(label, env) {
  const dataDir = tempDir('tesp-bench-mongo-');
  // API only: tasks stay QUEUED, so the store alone is measured.
  const tesp = await startTesp({ TESP_DATA_DIR: dataDir, TESP_COMPUTE__LOCAL__MAX_CONCURRENT_TASKS: '0', TESP_SCHEDULER__POLL_INTERVAL_MS: '60000', ...env });
  try {
    const create = await load(tesp.origin, { method: 'POST', path: '/ga4gh/tes/v1/tasks', body: TASK, total: CREATES, concurrency: 32 });
    if (STORED > CREATES) await load(tesp.origin, { method: 'POST', path: '/ga4gh/tes/v1/tasks', body: TASK, total: STORED - CREATES, concurrency: 32 });
    const first = await load(tesp.origin, { method: 'GET', path: '/ga4gh/tes/v1/tasks?page_size=256', total: LISTS, concurrency: 1 });
    const byState = await load(tesp.origin, { method: 'GET', path: '/ga4gh/tes/v1/tasks?state=QUEUED&page_size=256', total: LISTS, concurrency: 1 });
    return { label, create, first, byState };
  } finally {
    await tesp.stop();
    removeDir(dataDir);
  }
}

async function run() {
  const done = watchdog('mongo-store', 20 * 60 * 1000);
  try {
    const stores = [];
    if (await portOpen(27027)) stores.push(['MongoDB wire server (CongoDB)', `mongodb://127.0.0.1:27027/bench_${Date.now()}?serverMonitoringMode=poll`]);
    else console.error('mongo-store: the wire server is not running on 127.0.0.1:27027 (docker/start-mongo-wire.sh); only a real mongod is measured');
    if (process.env.TESP_TEST_MONGO_URL) {
      const url = new URL(process.env.TESP_TEST_MONGO_URL);
      url.pathname = `/bench_${Date.now()}`;
      stores.push(['MongoDB (real mongod)', url.toString()]);
    }
    const sqlite = await measure('SQLite', {});
    const rows = [];
    for (const [label, url] of stores) {
      const mongo = await measure(label, { TESP_STORE__KIND: 'mongodb', TESP_STORE__MONGODB__URL: url });
      rows.push({
        name: `create throughput on ${label} (POST /tasks, ${CREATES} requests, concurrency 32)`,
        tesp: `${fmt(mongo.create.perSecond, 0)} req/s (p50 ${fmt(percentile(mongo.create.latencies, 50))} ms)`,
        baseline: `SQLite, same run: ${fmt(sqlite.create.perSecond, 0)} req/s (p50 ${fmt(percentile(sqlite.create.latencies, 50))} ms)`,
        ratio: `${fmt(mongo.create.perSecond / sqlite.create.perSecond, 2)} × SQLite throughput`,
      });
      for (const [what, key] of [['first MINIMAL page of 256', 'first'], ['MINIMAL, state=QUEUED, page of 256', 'byState']]) {
        rows.push({
          name: `list ${what} on ${label} (${STORED} tasks, ${LISTS} sequential requests)`,
          tesp: `p50 ${fmt(percentile(mongo[key].latencies, 50))} ms, p99 ${fmt(percentile(mongo[key].latencies, 99))} ms`,
          baseline: `SQLite, same run: p50 ${fmt(percentile(sqlite[key].latencies, 50))} ms`,
          ratio: `${fmt(percentile(mongo[key].latencies, 50) / percentile(sqlite[key].latencies, 50), 2)} × SQLite latency (p50)`,
        });
      }
    }
    for (const row of rows) console.log(JSON.stringify(row));
    return rows;
  } finally {
    done();
  }
}

module.exports = { run };
if (require.main === module) run().then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });

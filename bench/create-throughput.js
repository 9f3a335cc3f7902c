// Create throughput: POST /tasks at concurrency 32 against tesp (validation + durable SQLite insert), versus a
// bare Node HTTP server answering the same {"id"} body. Tasks are kept QUEUED so only the API is measured.
'use strict';
const { tempDir, removeDir, watchdog, startTesp, startBaseline, load, percentile, fmt } = require('./lib');

const TOTAL = Number(process.env.BENCH_CREATE_TOTAL ?? 5000);
const WARMUP = 500;
const CONCURRENCY = 32;
const TASK = JSON.stringify({
  name: 'md5sum example',
  inputs: [{ path: '/data/file1', content: 'hello tesp\n' }],
  executors: [{ image: 'alpine:latest', command: ['md5sum', '/data/file1'] }],
  tags: { bench: 'create' },
});

async function measure(origin, requestPath) {
  await load(origin, { method: 'POST', path: requestPath, body: TASK, total: WARMUP, concurrency: CONCURRENCY });
  return load(origin, { method: 'POST', path: requestPath, body: TASK, total: TOTAL, concurrency: CONCURRENCY });
}

async function run() {
  const done = watchdog('create-throughput', 10 * 60 * 1000);
  const dataDir = tempDir('tesp-bench-create-');
  let tesp;
  let baseline;
  try {
    // The longest allowed dispatch delay keeps every created task QUEUED: no container runs during the load.
    tesp = await startTesp({ TESP_DATA_DIR: dataDir, TESP_COMPUTE__LOCAL__MAX_CONCURRENT_TASKS: '0', TESP_SCHEDULER__POLL_INTERVAL_MS: '60000' });
    baseline = await startBaseline('__ID__');
    const ours = await measure(tesp.origin, '/ga4gh/tes/v1/tasks');
    const bare = await measure(baseline.origin, '/tasks');
    const result = {
      name: `create throughput (POST /tasks, ${TOTAL} requests, concurrency ${CONCURRENCY})`,
      tesp: `${fmt(ours.perSecond, 0)} req/s (p50 ${fmt(percentile(ours.latencies, 50))} ms, p99 ${fmt(percentile(ours.latencies, 99))} ms)`,
      baseline: `bare node:http answering {"id"}: ${fmt(bare.perSecond, 0)} req/s (p50 ${fmt(percentile(bare.latencies, 50))} ms, p99 ${fmt(percentile(bare.latencies, 99))} ms)`,
      ratio: `${fmt(ours.perSecond / bare.perSecond, 2)} × baseline throughput`,
    };
    console.log(JSON.stringify(result));
    return result;
  } finally {
    await tesp?.stop();
    await baseline?.stop();
    removeDir(dataDir);
    done();
  }
}

module.exports = { run };
if (require.main === module) run().catch((err) => { console.error(err); process.exit(1); });

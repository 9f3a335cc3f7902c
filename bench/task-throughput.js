// End-to-end throughput of trivial tasks (`true`) with the process runtime: 1,000 tasks submitted over HTTP and
// run to COMPLETE by one tesp process, then by three processes on one SQLite file, against a baseline of spawning
// the same 1,000 processes directly with the same concurrency, measured in the same run.
'use strict';
const { spawn } = require('node:child_process');
const { Pool } = require('undici');
const { tempDir, removeDir, watchdog, startTesp, sleep, fmt } = require('./lib');

const TASKS = Number(process.env.BENCH_TASKS ?? 1000);
/** Tasks running at once: the baseline's concurrency, and the sum of the replicas' capacities. */
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 6);
const SUBMITTERS = 16;
const TASK = JSON.stringify({ executors: [{ image: 'ignored', command: ['true'] }] });

/** Spawns `true` TASKS times with CONCURRENCY at once; resolves to tasks per second. */
async function baseline() {
  let next = 0;
  const started = process.hrtime.bigint();
  const worker = async () => {
    while (next < TASKS) {
      next += 1;
      await new Promise((resolve, reject) => {
        const child = spawn('true', [], { stdio: 'ignore', detached: true });
        child.once('error', reject);
        child.once('close', resolve);
      });
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return TASKS / (Number(process.hrtime.bigint() - started) / 1e9);
}

/** Runs TASKS tasks through `replicas` tesp processes on one data directory; resolves to tasks per second. */
async function throughTesp(replicas) {
  const dataDir = tempDir('tesp-bench-throughput-');
  const capacity = Math.ceil(CONCURRENCY / replicas);
  const services = [];
  try {
    for (let i = 0; i < replicas; i++) {
      services.push(
        await startTesp({
          TESP_DATA_DIR: dataDir,
          TESP_COMPUTE__LOCAL__RUNTIME: 'process',
          TESP_COMPUTE__LOCAL__MAX_CONCURRENT_TASKS: String(capacity),
          TESP_SCHEDULER__HOLDER_ID: `bench-${i}`,
        }),
      );
    }
    const pools = services.map((service) => new Pool(service.origin, { connections: SUBMITTERS }));
    const started = process.hrtime.bigint();
    let sent = 0;
    const submit = async () => {
      while (sent < TASKS) {
        const n = sent++;
        const res = await pools[n % pools.length].request({ method: 'POST', path: '/ga4gh/tes/v1/tasks', body: TASK, headers: { 'content-type': 'application/json' } });
        const text = await res.body.text();
        if (res.statusCode !== 200) throw new Error(`POST /tasks: ${res.statusCode} ${text}`);
      }
    };
    await Promise.all(Array.from({ length: SUBMITTERS }, submit));
    // One MINIMAL list of every task per poll, so watching costs the server little.
    const states = async () => {
      const res = await pools[0].request({ method: 'GET', path: '/ga4gh/tes/v1/tasks?page_size=2048' });
      const counts = {};
      for (const task of JSON.parse(await res.body.text()).tasks) counts[task.state] = (counts[task.state] ?? 0) + 1;
      return counts;
    };
    for (;;) {
      const counts = await states();
      if ((counts.COMPLETE ?? 0) === TASKS) break;
      const failed = TASKS - (counts.COMPLETE ?? 0) - (counts.QUEUED ?? 0) - (counts.INITIALIZING ?? 0) - (counts.RUNNING ?? 0);
      if (failed > 0) throw new Error(`tasks ended otherwise than COMPLETE: ${JSON.stringify(counts)}`);
      await sleep(50);
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    await Promise.all(pools.map((pool) => pool.close()));
    return { perSecond: TASKS / seconds, capacity };
  } finally {
    await Promise.all(services.map((service) => service.stop()));
    removeDir(dataDir);
  }
}

async function run() {
  const done = watchdog('task-throughput', 20 * 60 * 1000);
  try {
    // Interleaved, so drift in the machine's speed does not favour one side.
    const base1 = await baseline();
    const one = await throughTesp(1);
    const base3 = await baseline();
    const three = await throughTesp(3);
    const bare = (base1 + base3) / 2;
    const rows = [
      { label: `one process (${CONCURRENCY} at once)`, result: one },
      { label: `three processes on one SQLite file (${three.capacity} each, ${3 * three.capacity} at once)`, result: three },
    ].map(({ label, result }) => ({
      name: `task throughput, ${TASKS} tasks running \`true\`, process runtime, ${label}`,
      tesp: `${fmt(result.perSecond, 0)} tasks/s (submit over HTTP to COMPLETE)`,
      baseline: `spawning \`true\` directly, ${CONCURRENCY} at once: ${fmt(bare, 0)} processes/s`,
      ratio: `${fmt(result.perSecond / bare, 2)} × baseline throughput`,
    }));
    for (const row of rows) console.log(JSON.stringify(row));
    return rows;
  } finally {
    done();
  }
}

module.exports = { run };
if (require.main === module) run().then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });

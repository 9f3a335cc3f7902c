// What dispatching through a Pulsar runner costs: submit-to-COMPLETE latency of a trivial task (`true`, process
// runtime) through the API and one `tesp runner`, over REST and over AMQP (the RabbitMQ on 127.0.0.1:5672), against
// the local backend running the same task in the same run; and tasks per second for many trivial tasks with one and
// with two runners (and one over AMQP), against the local backend with the same number of tasks running at once.
'use strict';
const { Pool } = require('undici');
const { tempDir, removeDir, watchdog, startTesp, startRunner, median, sleep, fmt } = require('./lib');

const LATENCY_RUNS = Number(process.env.BENCH_PULSAR_RUNS ?? 20);
const TASKS = Number(process.env.BENCH_PULSAR_TASKS ?? 500);
/** Tasks running at once, in every setup. */
const CONCURRENCY = Number(process.env.BENCH_PULSAR_CONCURRENCY ?? 8);
const TASK = JSON.stringify({ executors: [{ image: 'ignored', command: ['true'] }] });

const BROKER = process.env.BENCH_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672/';

/** Starts an API with `runners` runners (0: the local backend) over `transport`; resolves to {api, stop}. */
async function setup(runners, transport = 'rest') {
  const dirs = [];
  const stops = [];
  const env = { TESP_SCHEDULER__POLL_INTERVAL_MS: '50', TESP_COMPUTE__LOCAL__RUNTIME: 'process' };
  try {
    const entries = [];
    for (let i = 0; i < runners; i++) {
      const dir = tempDir('tesp-bench-runner-');
      dirs.push(dir);
      const manager = `bench${process.pid}x${Date.now().toString(36)}x${i}`;
      const amqp = transport === 'amqp' ? { TESP_RUNNER__AMQP__URL: BROKER, TESP_RUNNER__AMQP__MANAGER: manager, TESP_RUNNER__DIRECT_STAGING: 'false' } : {};
      const runner = await startRunner({ ...env, ...amqp, TESP_DATA_DIR: dir, TESP_RUNNER__MAX_CONCURRENT_JOBS: String(Math.ceil(CONCURRENCY / runners)) });
      stops.push(runner.stop);
      entries.push(transport === 'amqp' ? `r${i}=${BROKER}?manager=${manager}&runtime=process` : runner.entry(`r${i}`));
    }
    const dir = tempDir('tesp-bench-api-');
    dirs.push(dir);
    const api = await startTesp({
      ...env,
      TESP_DATA_DIR: dir,
      ...(runners > 0
        ? {
            TESP_COMPUTE__BACKEND: 'pulsar',
            TESP_COMPUTE__PULSAR__RUNNERS: JSON.stringify(entries),
            // Enough tasks in flight to keep every runner slot busy while others are being set up or collected.
            TESP_COMPUTE__PULSAR__MAX_CONCURRENT_TASKS: String(CONCURRENCY * 3),
            TESP_COMPUTE__PULSAR__POLL_INTERVAL_MS: '50',
          }
        : { TESP_COMPUTE__LOCAL__MAX_CONCURRENT_TASKS: String(CONCURRENCY) }),
    });
    stops.unshift(api.stop);
    return { api, stop: async () => { for (const s of stops) await s(); for (const d of dirs) removeDir(d); } };
  } catch (err) {
    for (const s of stops) await s();
    throw err;
  }
}

async function latency(api) {
  const times = [];
  for (let i = 0; i < LATENCY_RUNS; i++) {
    const t0 = process.hrtime.bigint();
    const created = await (await fetch(`${api.base}/tasks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: TASK })).json();
    for (;;) {
      const task = await (await fetch(`${api.base}/tasks/${created.id}`)).json();
      if (task.state === 'COMPLETE') break;
      if (['EXECUTOR_ERROR', 'SYSTEM_ERROR', 'CANCELED'].includes(task.state)) throw new Error(`task ended ${task.state}`);
      await sleep(5);
    }
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return median(times);
}

/** Runs TASKS tasks to COMPLETE; `before` tasks of the latency runs are in the store already. */
async function throughput(api, before) {
  const pool = new Pool(api.origin, { connections: 8 });
  const started = process.hrtime.bigint();
  let sent = 0;
  const submit = async () => {
    while (sent < TASKS) {
      sent += 1;
      const res = await pool.request({ method: 'POST', path: '/ga4gh/tes/v1/tasks', body: TASK, headers: { 'content-type': 'application/json' } });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`POST /tasks: ${res.statusCode} ${text}`);
    }
  };
  await Promise.all(Array.from({ length: 8 }, submit));
  for (;;) {
    const res = await pool.request({ method: 'GET', path: '/ga4gh/tes/v1/tasks?page_size=2048' });
    const tasks = JSON.parse(await res.body.text()).tasks;
    const complete = tasks.filter((t) => t.state === 'COMPLETE').length;
    if (complete === before + TASKS) break;
    const failed = tasks.filter((t) => ['EXECUTOR_ERROR', 'SYSTEM_ERROR', 'CANCELED'].includes(t.state));
    if (failed.length > 0) throw new Error(`${failed.length} task(s) did not complete`);
    await sleep(100);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await pool.close();
  return TASKS / seconds;
}

async function measure(runners, transport) {
  const s = await setup(runners, transport);
  try {
    return { latencyMs: await latency(s.api), perSecond: await throughput(s.api, LATENCY_RUNS) };
  } finally {
    await s.stop();
  }
}

async function run() {
  const done = watchdog('pulsar-dispatch', 20 * 60 * 1000);
  try {
    const local = await measure(0);
    const one = await measure(1);
    const two = await measure(2);
    const amqp = await measure(1, 'amqp');
    const rows = [
      {
        name: `submit to COMPLETE of \`true\` through one tesp runner (REST, process runtime), median of ${LATENCY_RUNS}`,
        tesp: `${fmt(one.latencyMs, 0)} ms`,
        baseline: `the local backend, same task: ${fmt(local.latencyMs, 0)} ms`,
        ratio: `${fmt(one.latencyMs / local.latencyMs, 2)} × the local latency (+${fmt(one.latencyMs - local.latencyMs, 0)} ms per task)`,
      },
      {
        name: `submit to COMPLETE of \`true\` through one tesp runner over AMQP (RabbitMQ, process runtime), median of ${LATENCY_RUNS}`,
        tesp: `${fmt(amqp.latencyMs, 0)} ms`,
        baseline: `the local backend, same task: ${fmt(local.latencyMs, 0)} ms; over REST: ${fmt(one.latencyMs, 0)} ms`,
        ratio: `${fmt(amqp.latencyMs / local.latencyMs, 2)} × the local latency, ${fmt(amqp.latencyMs / one.latencyMs, 2)} × REST`,
      },
      ...[
        ['one runner', one],
        ['two runners', two],
        ['one runner over AMQP', amqp],
      ].map(([label, result]) => ({
        name: `${TASKS} tasks running \`true\` through ${label} (${CONCURRENCY} jobs at once in all)`,
        tesp: `${fmt(result.perSecond, 1)} tasks/s`,
        baseline: `the local backend, ${CONCURRENCY} at once: ${fmt(local.perSecond, 1)} tasks/s`,
        ratio: `${fmt(result.perSecond / local.perSecond, 2)} × the local throughput`,
      })),
    ];
    for (const row of rows) console.log(JSON.stringify(row));
    return rows;
  } finally {
    done();
  }
}

module.exports = { run };
if (require.main === module) run().then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });

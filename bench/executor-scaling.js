// CPU over a task's life against its number of executors: one task of N executors running `true` (process runtime)
// from create over HTTP to COMPLETE (dispatch, run, every executor's log updates, a FULL read at the end), then one
// of 4N. The tesp process's CPU (every thread: API, store writer) is read from /proc. Work linear in the executors
// gives a ratio near 4; a step that handles every executor at every executor's update gives near 16.
'use strict';
const { readFileSync } = require('node:fs');
const { tempDir, removeDir, watchdog, startTesp, sleep, fmt } = require('./lib');

const N = Number(process.env.BENCH_EXECUTORS ?? 250);

/** CPU time (user + system, ms) of a whole process, every thread, from /proc (clock ticks of 10 ms). */
function processCpuMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

/** Runs one task of `count` executors in a fresh tesp; resolves to the CPU ms the server spent on it. */
async function cpuForExecutors(count) {
  const dataDir = tempDir('tesp-bench-executors-');
  // limits.executors (100 by default) raised to what is measured: the bench is about the work per executor.
  const tesp = await startTesp({ TESP_DATA_DIR: dataDir, TESP_COMPUTE__LOCAL__RUNTIME: 'process', TESP_SCHEDULER__POLL_INTERVAL_MS: '1000', TESP_LIMITS__EXECUTORS: String(Math.max(count, 100)) });
  try {
    await sleep(500);
    const before = processCpuMs(tesp.pid);
    const body = JSON.stringify({ executors: Array.from({ length: count }, (_, i) => ({ image: 'none', command: ['true'], env: { STEP: String(i) } })) });
    const res = await fetch(`${tesp.base}/tasks`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
    if (res.status !== 200) throw new Error(`POST /tasks: ${res.status} ${await res.text()}`);
    const { id } = await res.json();
    for (;;) {
      const task = await (await fetch(`${tesp.base}/tasks/${id}`)).json();
      if (task.state === 'COMPLETE') break;
      if (!['QUEUED', 'INITIALIZING', 'RUNNING'].includes(task.state)) throw new Error(`task ended ${task.state}`);
      await sleep(200);
    }
    const full = await (await fetch(`${tesp.base}/tasks/${id}?view=FULL`)).json();
    if (full.logs[0].logs.length !== count) throw new Error(`expected ${count} executor logs, got ${full.logs[0].logs.length}`);
    return processCpuMs(tesp.pid) - before;
  } finally {
    await tesp.stop();
    removeDir(dataDir);
  }
}

async function run() {
  const done = watchdog('executor-scaling', 30 * 60 * 1000);
  try {
    const small = await cpuForExecutors(N);
    const large = await cpuForExecutors(4 * N);
    const row = {
      name: `CPU of one task's life against its executors (process runtime, \`true\` each): ${N} and ${4 * N} executors`,
      tesp: `${fmt(small / 1000, 2)} s and ${fmt(large / 1000, 2)} s of server CPU`,
      baseline: 'linear work: 4 × the smaller task',
      ratio: `${fmt(large / small, 2)} (4 linear, 16 quadratic)`,
    };
    console.log(JSON.stringify(row));
    return row;
  } finally {
    done();
  }
}

module.exports = { run };
if (require.main === module) run().then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });

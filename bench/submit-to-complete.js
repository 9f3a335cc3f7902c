// Submit-to-COMPLETE latency of a trivial task through tesp (API, store, dispatcher, Docker, logs), versus
// `docker run --rm` of the same command, measured in the same run.
'use strict';
const { execFileSync } = require('node:child_process');
const { tempDir, removeDir, watchdog, startTesp, submitToComplete, median, percentile, dockerAvailable, fmt } = require('./lib');

const RUNS = Number(process.env.BENCH_SUBMIT_RUNS ?? 10);
const COMMAND = ['echo', 'hello'];

async function run() {
  if (!dockerAvailable()) {
    console.error('submit-to-complete: skipped, `docker info` fails (no Docker engine answers on this machine)');
    return { name: 'submit to COMPLETE', tesp: 'skipped: no Docker engine', baseline: '', ratio: '' };
  }
  const done = watchdog('submit-to-complete', 10 * 60 * 1000);
  const dataDir = tempDir('tesp-bench-submit-');
  let tesp;
  try {
    tesp = await startTesp({
      TESP_DATA_DIR: dataDir,
      TESP_SCHEDULER__POLL_INTERVAL_MS: '50',
      TESP_COMPUTE__LOCAL__RUNTIME: 'docker',
      TESP_COMPUTE__LOCAL__PULL_IMAGES: 'false',
    });
    const submit = async () => (await submitToComplete(tesp.base, { executors: [{ image: 'alpine:latest', command: COMMAND }] })).ms;
    const dockerRun = () => {
      const t0 = process.hrtime.bigint();
      execFileSync('docker', ['run', '--rm', '--network', 'none', 'alpine:latest', ...COMMAND], { stdio: 'ignore', timeout: 60000 });
      return Number(process.hrtime.bigint() - t0) / 1e6;
    };
    // Alternating the two keeps drift in the Docker engine's speed from favouring either; round 0 warms up.
    const ours = [];
    const bare = [];
    for (let i = 0; i < RUNS + 1; i++) {
      const a = await submit();
      const b = dockerRun();
      if (i > 0) ours.push(a), bare.push(b);
    }
    const result = {
      name: `submit to COMPLETE, alpine echo hello (${RUNS} runs)`,
      tesp: `median ${fmt(median(ours), 0)} ms (p90 ${fmt(percentile(ours, 90), 0)} ms)`,
      baseline: `docker run --rm --network none: median ${fmt(median(bare), 0)} ms (p90 ${fmt(percentile(bare, 90), 0)} ms)`,
      ratio: `${fmt(median(ours) / median(bare), 2)} × baseline latency`,
    };
    console.log(JSON.stringify(result));
    return result;
  } finally {
    await tesp?.stop();
    removeDir(dataDir);
    done();
  }
}

module.exports = { run };
if (require.main === module) run().catch((err) => { console.error(err); process.exit(1); });

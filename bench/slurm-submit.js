// Submit-to-COMPLETE of a trivial task through tesp on Slurm (API, store, dispatcher, staging, sbatch, batched state
// reads, logs), versus `sbatch --wait` of the same job script tesp renders, on the same Slurm, in the same run.
// Needs the one-node Slurm of docker/start-slurm.sh.
'use strict';
const { execFileSync } = require('node:child_process');
const { mkdirSync, readdirSync, readFileSync, writeFileSync } = require('node:fs');
const path = require('node:path');
const { tempDir, removeDir, watchdog, startTesp, submitToComplete, median, percentile, fmt } = require('./lib');

const RUNS = Number(process.env.BENCH_SLURM_RUNS ?? 10);
const POLL_MS = 250;
const TASK = { executors: [{ image: 'alpine:latest', command: ['echo', 'hello'] }] };

function slurmAvailable() {
  try {
    return /is UP/.test(execFileSync('scontrol', ['ping'], { encoding: 'utf8', timeout: 10000 }));
  } catch {
    return false;
  }
}

async function run() {
  if (!slurmAvailable()) {
    console.error('slurm-submit: skipped, `scontrol ping` finds no Slurm controller (run docker/start-slurm.sh)');
    return { name: 'submit to COMPLETE on Slurm', tesp: 'skipped: no Slurm', baseline: '', ratio: '' };
  }
  const done = watchdog('slurm-submit', 10 * 60 * 1000);
  const dataDir = tempDir('tesp-bench-slurm-');
  const baselineDir = tempDir('tesp-bench-sbatch-');
  let tesp;
  try {
    tesp = await startTesp({
      TESP_DATA_DIR: dataDir,
      TESP_SCHEDULER__POLL_INTERVAL_MS: '50',
      TESP_COMPUTE__LOCAL__RUNTIME: 'slurm',
      TESP_COMPUTE__LOCAL__KEEP_TASK_DIRS: 'true',
      TESP_COMPUTE__SLURM__CONTAINERS: 'process',
      TESP_COMPUTE__SLURM__POLL_INTERVAL_MS: String(POLL_MS),
    });
    const submit = () => submitToComplete(tesp.base, TASK);
    // The warm-up task leaves its directory (keep_task_dirs): its job script is the baseline's.
    const first = await submit();
    const script = readFileSync(path.join(dataDir, 'slurm', first.id, 'inputs', 'tesp', 'job.sh'), 'utf8');
    let n = 0;
    const sbatchWait = () => {
      const job = path.join(baselineDir, String(n++));
      for (const sub of ['inputs/tesp', 'working', 'metadata']) mkdirSync(path.join(job, sub), { recursive: true });
      writeFileSync(path.join(job, 'inputs', 'tesp', 'job.sh'), script);
      const t0 = process.hrtime.bigint();
      execFileSync('sbatch', ['--wait', '--quiet', `--chdir=${path.join(job, 'working')}`, `--output=${path.join(job, 'output')}`, '--wrap', 'exec bash ../inputs/tesp/job.sh'], { stdio: 'ignore', timeout: 120000 });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (!readFileSync(path.join(job, 'metadata', 'tesp', 'progress'), 'utf8').includes('end\t')) throw new Error('the baseline job script did not run to its end');
      return ms;
    };
    sbatchWait(); // warms the baseline up too
    const ours = [];
    const bare = [];
    // Alternating the two keeps drift in Slurm's speed from favouring either.
    for (let i = 0; i < RUNS; i++) {
      ours.push((await submit()).ms);
      bare.push(sbatchWait());
    }
    const kept = readdirSync(path.join(dataDir, 'slurm')).length;
    const result = {
      name: `submit to COMPLETE on Slurm, echo hello as a process (${RUNS} runs, compute.slurm.poll_interval_ms ${POLL_MS})`,
      tesp: `median ${fmt(median(ours), 0)} ms (p90 ${fmt(percentile(ours, 90), 0)} ms)`,
      baseline: `sbatch --wait of the same job script: median ${fmt(median(bare), 0)} ms (p90 ${fmt(percentile(bare, 90), 0)} ms)`,
      ratio: `${fmt(median(ours) / median(bare), 2)} × baseline latency`,
    };
    if (kept !== RUNS + 1) throw new Error(`expected ${RUNS + 1} task directories, found ${kept}`);
    console.log(JSON.stringify(result));
    return result;
  } finally {
    await tesp?.stop();
    removeDir(dataDir);
    removeDir(baselineDir);
    done();
  }
}

module.exports = { run };
if (require.main === module) run().catch((err) => { console.error(err); process.exit(1); });

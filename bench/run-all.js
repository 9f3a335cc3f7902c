// Runs every benchmark in sequence and prints a markdown table (also written to bench/results/latest.md).
'use strict';
const { mkdirSync, writeFileSync } = require('node:fs');
const path = require('node:path');
const { machine } = require('./lib');

async function main() {
  const rows = [];
  for (const name of ['create-throughput', 'list-latency', 'submit-to-complete', 'task-throughput', 'pulsar-dispatch', 'mongo-store', 'http-transfer', 'storage-transfer', 'sftp-transfer', 'storage-memory', 'slurm-submit']) {
    console.error(`running ${name} ...`);
    const result = await require(`./${name}`).run();
    rows.push(...(Array.isArray(result) ? result : [result]));
  }
  const lines = [
    `Machine: ${machine()}; measured ${new Date().toISOString().slice(0, 10)}.`,
    '',
    '| benchmark | tesp | baseline (same run) | ratio |',
    '|---|---|---|---|',
    ...rows.map((r) => `| ${r.name} | ${r.tesp} | ${r.baseline} | ${r.ratio} |`),
  ];
  const table = lines.join('\n');
  console.log(table);
  mkdirSync(path.join(__dirname, 'results'), { recursive: true });
  writeFileSync(path.join(__dirname, 'results', 'latest.md'), table + '\n');
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);

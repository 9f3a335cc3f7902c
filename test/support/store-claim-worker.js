// A child process for the SQLite multi-process test: opens the store, says "ready", waits for "go" on stdin, then
// claims tasks until none is left and prints the ids it got as one JSON line.
// Usage: node store-claim-worker.js <compiled sqlite-task.repository.js> <database file> <holder>
'use strict';

const [repositoryModule, file, holder] = process.argv.slice(2);
const { SqliteTaskRepository } = require(repositoryModule);

async function main() {
  const repo = new SqliteTaskRepository(file);
  process.stdout.write('ready\n');
  await new Promise((resolve) => process.stdin.once('data', resolve));
  const claimed = [];
  for (let task = await repo.claimNext(holder, 60_000); task; task = await repo.claimNext(holder, 60_000)) {
    claimed.push(task.id);
    // A pause between claims, as a replica starting a task makes: without one, the process holding the write lock
    // keeps winning it and the others hardly ever claim at the same time.
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await repo.close();
  process.stdout.write(`${JSON.stringify({ holder, claimed })}\n`);
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`${err && err.stack ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);

// The writer thread: owns the store's write connection and runs every write in group-commit batches, so that a
// batch's statements and its fsync (synchronous=FULL) never hold the API's event loop. Writes that arrive while a
// batch commits form the next batch.
import { MessagePort, parentPort, workerData } from 'node:worker_threads';
import { connectTaskDatabase } from './sqlite-schema';
import { SqliteGroupCommit } from './sqlite-group-commit';
import { SqliteTaskWrites } from './sqlite-task-writes';
import { toDomainError } from './sqlite-task-rows';
import { FromWriter, ToWriter, toWireError, WriteOutcome, WriteRequest, WriterStart } from './sqlite-writer-protocol';

const { file, ready, startup } = workerData as { file: string; ready: Int32Array; startup: MessagePort };
const port = parentPort!;

/** Tells the waiting constructor how opening went: the message first, then the wake-up. */
function started(start: WriterStart): void {
  startup.postMessage(start);
  startup.close();
  Atomics.store(ready, 0, 1);
  Atomics.notify(ready, 0);
}

let opened: ReturnType<typeof connectTaskDatabase>;
try {
  // The repository's constructor has created or upgraded the file on its own connection first.
  opened = connectTaskDatabase(file);
} catch (err) {
  started({ ok: false, error: toWireError(toDomainError(err)) });
  // Ends this thread only; the constructor throws what it was told.
  process.exit(1);
}
started({ ok: true });
const db = opened;
const writes = new SqliteTaskWrites(db);
const groupCommit = new SqliteGroupCommit(db);
let pending: WriteRequest[] = [];
let scheduled = false;

const send = (message: FromWriter) => port.postMessage(message);

function commitPending(): void {
  scheduled = false;
  const batch = pending;
  pending = [];
  if (batch.length === 0) return;
  const outcomes = groupCommit.commit(batch.map((request) => () => (writes[request.name] as (...args: unknown[]) => unknown).apply(writes, request.args)));
  send({
    kind: 'committed',
    outcomes: outcomes.map((outcome, i): WriteOutcome =>
      outcome.ok ? { seq: batch[i].seq, ok: true, value: outcome.value } : { seq: batch[i].seq, ok: false, error: toWireError(toDomainError(outcome.error)) },
    ),
  });
}

port.on('message', (message: ToWriter) => {
  if (message.kind === 'close') {
    // Writes sent before close still commit; then nothing keeps the thread alive.
    commitPending();
    db.close();
    send({ kind: 'closed' });
    port.close();
    return;
  }
  for (const write of message.writes) pending.push(write);
  if (!scheduled) {
    scheduled = true;
    setImmediate(commitPending);
  }
});

// The writer thread: owns the store's write connection and runs every write in group-commit batches, so that a
// batch's statements and its fsync (synchronous=FULL) never hold the API's event loop. Writes that arrive while a
// batch commits form the next batch.
import { statSync } from 'node:fs';
import { MessagePort, parentPort, workerData } from 'node:worker_threads';
import { DomainError, ErrorCode } from '../../domain/domain-error';
import { connectTaskDatabase } from './sqlite-schema';
import { SqliteGroupCommit } from './sqlite-group-commit';
import { SqliteTaskWrites } from './sqlite-task-writes';
import { storeReplaced, toDomainError } from './sqlite-task-rows';
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

/** The file's identity (device and inode) when opened: a path that names another file later was removed or replaced. */
type Identity = { dev: number; ino: number };
const identityOf = (): Identity | undefined => {
  try {
    const { dev, ino } = statSync(file);
    return { dev, ino };
  } catch {
    return undefined;
  }
};

let opened: ReturnType<typeof connectTaskDatabase>;
let identity: Identity | undefined;
try {
  // The repository's constructor has created or upgraded the file on its own connection first.
  opened = connectTaskDatabase(file);
  identity = identityOf();
} catch (err) {
  started({ ok: false, error: toWireError(toDomainError(err, file)) });
  // Ends this thread only; the constructor throws what it was told.
  process.exit(1);
}
started({ ok: true });
const db = opened;
const writes = new SqliteTaskWrites(db);
const groupCommit = new SqliteGroupCommit(db);
let pending: WriteRequest[] = [];
let scheduled = false;
/** Set once the file is found removed, replaced or corrupted: every later write fails with it, unrun. */
let broken: DomainError | undefined;

/** Why the path no longer names the file this connection writes (one stat: cheap beside a batch's fsync). */
function replaced(): DomainError | undefined {
  const now = identityOf();
  if (!now) return storeReplaced(file, 'the path no longer exists');
  if (identity && (now.dev !== identity.dev || now.ino !== identity.ino)) return storeReplaced(file, 'the path names another file now');
  return undefined;
}

const send = (message: FromWriter) => port.postMessage(message);

function commitPending(): void {
  scheduled = false;
  const batch = pending;
  pending = [];
  if (batch.length === 0) return;
  broken ??= replaced();
  const results = broken
    ? batch.map(() => ({ ok: false as const, error: broken }))
    : groupCommit.commit(batch.map((request) => () => (writes[request.name] as (...args: unknown[]) => unknown).apply(writes, request.args)));
  const errors = results.map((outcome) => (outcome.ok ? undefined : toDomainError(outcome.error, file)));
  broken ??= errors.find((err): err is DomainError => err instanceof DomainError && err.code === ErrorCode.StoreBroken);
  // Removed during the commit: what it wrote is in a file no restart will open, so none of it was stored.
  broken ??= replaced();
  send({
    kind: 'committed',
    outcomes: results.map((outcome, i): WriteOutcome =>
      outcome.ok && !broken ? { seq: batch[i].seq, ok: true, value: outcome.value } : { seq: batch[i].seq, ok: false, error: toWireError(errors[i] ?? broken) },
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

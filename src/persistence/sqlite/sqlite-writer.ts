import { existsSync, readdirSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { MessageChannel, receiveMessageOnPort, Worker } from 'node:worker_threads';
import type { Logger } from '../../common/logger';
import { DomainError, ErrorCode } from '../../domain/domain-error';
import { isCorruption } from './sqlite-task-rows';
import type { WriteArgs, WriteName, WriteResult } from './sqlite-task-writes';
import { FromWriter, fromWireError, ToWriter, WriteRequest, WriterStart } from './sqlite-writer-protocol';

/** How long the constructor waits for the writer thread to open the file (from TypeScript sources: seconds). */
const START_TIMEOUT_MS = 30_000;

interface Waiting {
  name: WriteName;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/**
 * The main thread's end of the writer thread (sqlite-writer.worker.ts): sends writes, settles each promise when its
 * batch has committed. The thread keeps the process alive only while writes are in flight. One thread per file and
 * process: repositories on the same file share it (in production there is one; tests run several replicas in one
 * process), so a second one starts without waiting for a thread and their writes share batches.
 */
export class SqliteWriter {
  private static readonly byFile = new Map<string, SqliteWriter>();

  /** The file's writer, started if this process has none running; give it back with release(). */
  static acquire(file: string, logger?: Logger): SqliteWriter {
    const key = path.resolve(file);
    let writer = SqliteWriter.byFile.get(key);
    if (!writer || writer.stopped) {
      writer = new SqliteWriter(file, logger);
      SqliteWriter.byFile.set(key, writer);
    }
    writer.users += 1;
    return writer;
  }

  private users = 0;
  private readonly worker: Worker;
  private readonly waiting = new Map<number, Waiting>();
  private readonly exited: Promise<void>;
  private nextSeq = 0;
  private outbox: WriteRequest[] = [];
  private stopped?: DomainError;
  /** The store's file is gone or corrupted: writes (and, when corrupted, reads) are refused with this. */
  private brokenBy?: DomainError;
  /** The last write failed for lack of space; cleared (and said so) by the next that commits. */
  private full = false;

  /**
   * Returns once the thread has opened the file, blocking the caller meanwhile (about a tenth of a second, at start-up):
   * the first write then commits as fast as any other, and a file the thread cannot open throws here.
   */
  private constructor(
    private readonly file: string,
    private readonly logger?: Logger,
  ) {
    this.worker = startWriterThread(file);
    this.worker.unref();
    this.worker.on('message', (message: FromWriter) => this.receive(message));
    this.worker.on('error', (err) => this.stop(`failed: ${err.message}`));
    this.exited = new Promise((resolve) => this.worker.once('exit', (code) => {
      this.stop(`exited (code ${code})`);
      resolve();
    }));
  }

  /** `args` go to the thread at the end of this event-loop turn: the caller must not change them meanwhile. */
  write<K extends WriteName>(name: K, ...args: WriteArgs<K>): Promise<WriteResult<K>> {
    if (this.stopped) return Promise.reject(this.stopped);
    if (this.brokenBy) return Promise.reject(this.brokenBy);
    return new Promise((resolve, reject) => {
      const seq = ++this.nextSeq;
      this.waiting.set(seq, { name, resolve: resolve as (value: unknown) => void, reject });
      if (this.waiting.size === 1) this.worker.ref();
      this.outbox.push({ seq, name, args });
      // Requests that arrived in one poll phase of the event loop go together, right after it.
      if (this.outbox.length === 1) setImmediate(() => this.send());
    });
  }

  /**
   * One user less; the last one closes the thread. The caller has awaited its own writes (writes sent before the
   * last release still commit and settle); resolves once the thread is done with them.
   */
  async release(): Promise<void> {
    this.users -= 1;
    if (this.users > 0) return;
    if (SqliteWriter.byFile.get(path.resolve(this.file)) === this) SqliteWriter.byFile.delete(path.resolve(this.file));
    if (!this.stopped) {
      this.worker.ref();
      this.send();
      this.post({ kind: 'close' });
    }
    await this.exited;
  }

  /** Why the store refuses everything, when its file is corrupted (a deleted file still serves reads). */
  get readsRefusedBy(): DomainError | undefined {
    return this.brokenBy && isCorruption(this.brokenBy) ? this.brokenBy : undefined;
  }

  /**
   * What a read or write of this file failed with: a store fault (full, removed, corrupted) is logged once per
   * episode, and a broken file stops all writes from here on.
   */
  noteFailure(err: unknown): void {
    if (!(err instanceof DomainError)) return;
    if (err.code === ErrorCode.StoreBroken && !this.brokenBy) {
      this.brokenBy = err;
      this.logger?.error({ file: this.file }, err.message);
    } else if (err.code === ErrorCode.StoreFull && !this.full) {
      this.full = true;
      this.logger?.error({ file: this.file }, err.message);
    }
  }

  private noteCommitted(): void {
    if (!this.full) return;
    this.full = false;
    this.logger?.info({ file: this.file }, 'the task store accepts writes again: space was freed');
  }

  private send(): void {
    if (this.outbox.length === 0) return;
    const writes = this.outbox;
    this.outbox = [];
    this.post({ kind: 'writes', writes });
  }

  private post(message: ToWriter): void {
    this.worker.postMessage(message);
  }

  private receive(message: FromWriter): void {
    if (message.kind !== 'committed') return;
    for (const outcome of message.outcomes) {
      const waiting = this.waiting.get(outcome.seq);
      if (!waiting) continue;
      this.waiting.delete(outcome.seq);
      if (outcome.ok) {
        if (wroteRows(waiting.name, outcome.value)) this.noteCommitted();
        waiting.resolve(outcome.value);
      } else {
        const err = fromWireError(outcome.error);
        this.noteFailure(err);
        waiting.reject(err);
      }
    }
    if (this.waiting.size === 0) this.worker.unref();
  }

  /** The thread is gone: what waits fails as unavailable (it may or may not have committed), and so does what comes. */
  private stop(why: string): void {
    this.stopped ??= new DomainError(ErrorCode.Unavailable, `the task store's writer thread ${why}`);
    for (const waiting of this.waiting.values()) waiting.reject(this.stopped);
    this.waiting.clear();
  }
}

/** Whether a committed write changed the file (a renewal of no lease commits even on a full disk). */
function wroteRows(name: WriteName, value: unknown): boolean {
  return name === 'insert' || (name === 'patch' && (value as { applied?: boolean }).applied === true);
}

/**
 * Starts the thread and waits for it to say it has opened the file. The thread is the compiled worker beside this
 * module. From TypeScript sources (jest runs them) it is the build's, when the build is newer than every source the
 * thread loads (npm test builds first); otherwise the .ts worker, compiled on load with the project's TypeScript
 * (seconds), so a stale build is never what runs.
 */
function startWriterThread(file: string): Worker {
  const ready = new Int32Array(new SharedArrayBuffer(4));
  const { port1, port2 } = new MessageChannel();
  const workerData = { file, ready, startup: port2 };
  const options = { workerData, transferList: [port2] };
  const entry = writerEntry();
  const worker = entry.endsWith('.js') ? new Worker(entry, options) : new Worker(compilingBootstrap(entry), { ...options, eval: true });
  const waited = Atomics.wait(ready, 0, 0, START_TIMEOUT_MS);
  const start = receiveMessageOnPort(port1)?.message as WriterStart | undefined;
  port1.close();
  if (waited === 'timed-out' || !start?.ok) {
    worker.on('error', () => undefined); // what it had to say is in `start`
    void worker.terminate();
    const why = start && !start.ok ? fromWireError(start.error).message : `no answer within ${START_TIMEOUT_MS} ms`;
    throw new DomainError(ErrorCode.Unavailable, `the task store's writer thread could not open ${file}: ${why}`);
  }
  return worker;
}

function writerEntry(): string {
  const compiled = path.join(__dirname, 'sqlite-writer.worker.js');
  if (path.extname(__filename) !== '.ts') return compiled;
  const source = path.join(__dirname, 'sqlite-writer.worker.ts');
  const src = path.resolve(__dirname, '..', '..');
  const built = path.resolve(src, '..', 'dist');
  // What the thread loads: this folder and the domain (task patches).
  const sources = ['persistence/sqlite', 'domain'].flatMap((dir) =>
    readdirSync(path.join(src, dir)).filter((name) => name.endsWith('.ts') && !name.endsWith('.spec.ts')).map((name) => path.join(dir, name)),
  );
  const fresh = sources.every((name) => {
    const output = path.join(built, name.replace(/\.ts$/, '.js'));
    return existsSync(output) && statSync(output).mtimeMs >= statSync(path.join(src, name)).mtimeMs;
  });
  return fresh ? path.join(built, 'persistence', 'sqlite', 'sqlite-writer.worker.js') : source;
}

/** A worker that compiles .ts modules as it loads them, as ts-jest does on the main thread. */
function compilingBootstrap(entry: string): string {
  return `
    const ts = require(${JSON.stringify(require.resolve('typescript'))});
    const { readFileSync } = require('node:fs');
    const options = { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true };
    require.extensions['.ts'] = (module, name) => module._compile(ts.transpileModule(readFileSync(name, 'utf8'), { compilerOptions: options, fileName: name }).outputText, name);
    require(${JSON.stringify(entry)});`;
}

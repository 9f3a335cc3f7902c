import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { DomainError, ErrorCode } from '../../domain/domain-error';
import type { WriteArgs, WriteName, WriteResult } from './sqlite-task-writes';
import { FromWriter, fromWireError, ToWriter, WriteRequest } from './sqlite-writer-protocol';

interface Waiting {
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/**
 * The main thread's end of the writer thread (sqlite-writer.worker.ts): sends writes, settles each promise when its
 * batch has committed. The thread keeps the process alive only while writes are in flight.
 */
export class SqliteWriter {
  private readonly worker: Worker;
  private readonly waiting = new Map<number, Waiting>();
  private readonly exited: Promise<void>;
  private nextSeq = 0;
  private outbox: WriteRequest[] = [];
  private stopped?: DomainError;

  constructor(file: string) {
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
    return new Promise((resolve, reject) => {
      const seq = ++this.nextSeq;
      this.waiting.set(seq, { resolve: resolve as (value: unknown) => void, reject });
      if (this.waiting.size === 1) this.worker.ref();
      this.outbox.push({ seq, name, args });
      // Requests that arrived in one poll phase of the event loop go together, right after it.
      if (this.outbox.length === 1) setImmediate(() => this.send());
    });
  }

  /** Writes sent before close still commit and settle; resolves once the write connection is closed. */
  async close(): Promise<void> {
    if (!this.stopped) {
      this.worker.ref();
      this.send();
      this.post({ kind: 'close' });
    }
    await this.exited;
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
      if (outcome.ok) waiting.resolve(outcome.value);
      else waiting.reject(fromWireError(outcome.error));
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

/**
 * The compiled worker beside this module; from TypeScript sources (jest runs them), the .ts worker compiled on
 * load with the project's TypeScript, as ts-jest does on the main thread, so tests never run a stale build.
 */
function startWriterThread(file: string): Worker {
  const extension = path.extname(__filename);
  const entry = path.join(__dirname, `sqlite-writer.worker${extension}`);
  if (extension !== '.ts') return new Worker(entry, { workerData: { file } });
  const typescript = require.resolve('typescript');
  const bootstrap = `
    const ts = require(${JSON.stringify(typescript)});
    const { readFileSync } = require('node:fs');
    const options = { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true };
    require.extensions['.ts'] = (module, name) => module._compile(ts.transpileModule(readFileSync(name, 'utf8'), { compilerOptions: options, fileName: name }).outputText, name);
    require(${JSON.stringify(entry)});`;
  return new Worker(bootstrap, { eval: true, workerData: { file } });
}

import type { WriteStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';

/** Keeps the last `limit` bytes written, as text with no broken leading character. */
export class TailBuffer {
  private chunks: Buffer[] = [];
  private size = 0;

  constructor(private readonly limit: number) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size - this.chunks[0].length >= this.limit) this.size -= this.chunks.shift()!.length;
  }

  text(): string {
    let buf = Buffer.concat(this.chunks);
    if (buf.length > this.limit) buf = buf.subarray(buf.length - this.limit);
    // Skip UTF-8 continuation bytes left at the front by the cut.
    let start = 0;
    while (start < buf.length && start < 4 && (buf[start] & 0xc0) === 0x80) start += 1;
    let text = buf.subarray(start).toString('utf8');
    // Bytes that are not UTF-8 decode to U+FFFD (3 bytes each): drop leading characters until the text fits again.
    let bytes = Buffer.byteLength(text);
    if (bytes > this.limit) {
      const chars = [...text];
      let drop = 0;
      while (bytes > this.limit) bytes -= Buffer.byteLength(chars[drop++]);
      text = chars.slice(drop).join('');
    }
    return text;
  }
}

/** The files an executor's stdout and stderr go to, opened already (the same handle when both name one file). */
export interface OutputFiles {
  stdout?: FileHandle;
  stderr?: FileHandle;
}

/** An executor's stdout and stderr: bounded tails for the task log, and the task's stdout/stderr files if named. */
export class ExecutorOutput {
  readonly stdout: Writable;
  readonly stderr: Writable;
  private readonly tails: { stdout: TailBuffer; stderr: TailBuffer };
  private readonly files: WriteStream[] = [];
  private fileError?: Error;
  private version = 0;
  private reported = 0;

  constructor(limit: number, files: OutputFiles = {}) {
    this.tails = { stdout: new TailBuffer(limit), stderr: new TailBuffer(limit) };
    const stdoutStream = this.open(files.stdout);
    // One file named for both streams gets both, interleaved, through one writer.
    const stderrStream = files.stderr !== undefined && files.stderr === files.stdout ? stdoutStream : this.open(files.stderr);
    this.stdout = this.sink(this.tails.stdout, stdoutStream);
    this.stderr = this.sink(this.tails.stderr, stderrStream);
  }

  private open(file: FileHandle | undefined): WriteStream | undefined {
    if (file === undefined) return undefined;
    const out = file.createWriteStream();
    this.files.push(out);
    // A full disk must not stop the executor or the tails; the error is reported when the output closes.
    out.on('error', (err) => (this.fileError ??= err));
    return out;
  }

  private sink(tail: TailBuffer, out: WriteStream | undefined): Writable {
    return new Writable({
      write: (chunk: Buffer, _enc, done) => {
        tail.push(chunk);
        this.version += 1;
        if (out && !out.destroyed) {
          out.write(chunk, (err) => {
            if (err) this.fileError ??= err;
            done();
          });
        } else {
          done();
        }
      },
    });
  }

  /** The tails, if anything arrived since the last call. */
  takeChanges(): { stdout: string; stderr: string } | undefined {
    if (this.version === this.reported) return undefined;
    this.reported = this.version;
    return this.snapshot();
  }

  snapshot(): { stdout: string; stderr: string } {
    return { stdout: this.tails.stdout.text(), stderr: this.tails.stderr.text() };
  }

  /** Flushes the stdout/stderr files; resolves with what went wrong writing them, if anything. */
  async close(): Promise<Error | undefined> {
    await Promise.all(this.files.map((f) => new Promise<void>((resolve) => (f.destroyed ? resolve() : f.end(resolve)))));
    return this.fileError;
  }
}

import { createWriteStream, WriteStream } from 'node:fs';
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
    return buf.subarray(start).toString('utf8');
  }
}

/** An executor's stdout and stderr: bounded tails for the task log, and the task's stdout/stderr files if named. */
export class ExecutorOutput {
  readonly stdout: Writable;
  readonly stderr: Writable;
  private readonly tails: { stdout: TailBuffer; stderr: TailBuffer };
  private readonly files: WriteStream[] = [];
  private version = 0;
  private reported = 0;

  constructor(limit: number, stdoutFile?: string, stderrFile?: string) {
    this.tails = { stdout: new TailBuffer(limit), stderr: new TailBuffer(limit) };
    this.stdout = this.sink(this.tails.stdout, stdoutFile);
    this.stderr = this.sink(this.tails.stderr, stderrFile);
  }

  private sink(tail: TailBuffer, file?: string): Writable {
    const out = file ? createWriteStream(file) : undefined;
    if (out) this.files.push(out);
    return new Writable({
      write: (chunk: Buffer, _enc, done) => {
        tail.push(chunk);
        this.version += 1;
        if (out) out.write(chunk, done);
        else done();
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

  async close(): Promise<void> {
    await Promise.all(this.files.map((f) => new Promise<void>((resolve) => f.end(resolve))));
  }
}

// The test-only MongoDB wire-protocol server (CongoDB, test/mongo-wire/server.js): the shared one that
// docker/start-mongo-wire.sh starts on 127.0.0.1:27027, and private ones a test can kill and start again.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { tcpOpen } from './service-check';

/** The launcher; its package (test/mongo-wire) is installed apart from tesp's own dependencies. */
export const MONGO_WIRE_LAUNCHER = path.resolve(__dirname, '..', 'mongo-wire', 'server.js');

/**
 * URL of a database on a wire server. CongoDB has no streaming (exhaust) `hello`: it answers once without
 * moreToCome, the driver's streaming monitor fails the heartbeat ("Server ended moreToCome unexpectedly"), marks
 * the server Unknown and clears its pool. So the driver must poll (`serverMonitoringMode=poll`).
 */
export function mongoWireUrl(port: number, db: string): string {
  return `mongodb://127.0.0.1:${port}/${encodeURIComponent(db)}?serverMonitoringMode=poll`;
}

/** The shared wire server that docker/start-mongo-wire.sh starts. */
export const MONGO_WIRE = {
  port: 27027,
  url: (db: string): string => mongoWireUrl(27027, db),
};

export function mongoWireAvailable(): boolean {
  return tcpOpen(MONGO_WIRE.port);
}

/** Whether `npm ci --prefix test/mongo-wire` has been run (a MongoWireProcess needs it, not the shared server). */
export function mongoWireInstalled(): boolean {
  return existsSync(path.resolve(__dirname, '..', 'mongo-wire', 'node_modules', '@push.rocks', 'smartmongo', 'package.json'));
}

/**
 * A wire server of the test's own, as a child process: start() picks a free port the first time and keeps it, so
 * after stop() a second start() serves the same URL (empty: the data lives in the process) and clients reconnect.
 */
export class MongoWireProcess {
  port = 0;
  output = '';
  private child?: ChildProcess;

  url(db: string): string {
    if (!this.port) throw new Error('MongoWireProcess: start() first');
    return mongoWireUrl(this.port, db);
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(timeoutMs = 15_000): Promise<void> {
    if (this.running) throw new Error('MongoWireProcess: already running');
    const child = spawn(process.execPath, [MONGO_WIRE_LAUNCHER, '--port', String(this.port)], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.output = '';
    let stdout = '';
    child.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`no {"listening":N} within ${timeoutMs} ms`)), timeoutMs);
      const fail = (err: Error) => {
        clearTimeout(timer);
        child.kill('SIGKILL');
        reject(new Error(`mongo-wire launcher: ${err.message}\n${this.output}`));
      };
      child.once('error', fail);
      child.once('exit', (code, signal) => fail(new Error(`exited with ${code ?? signal} before listening`)));
      child.stdout?.on('data', (d: Buffer) => {
        stdout += d.toString();
        this.output += d.toString();
        const line = stdout.split('\n').find((l) => l.startsWith('{'));
        if (!line) return;
        try {
          const listening = (JSON.parse(line) as { listening?: unknown }).listening;
          if (typeof listening !== 'number') throw new Error(`unexpected line ${line}`);
          clearTimeout(timer);
          child.removeAllListeners('exit');
          resolve(listening);
        } catch (err) {
          fail(err as Error);
        }
      });
    });
    this.port = port;
  }

  /** SIGTERM (clean stop) or SIGKILL (crash); resolves with how the process ended once it is gone. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const child = this.child;
    if (!child) return { code: null, signal: null };
    if (child.exitCode !== null || child.signalCode !== null) return { code: child.exitCode, signal: child.signalCode };
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, sig) => resolve({ code, signal: sig })),
    );
    child.kill(signal);
    return exited;
  }
}

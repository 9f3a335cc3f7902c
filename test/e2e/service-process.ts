// Runs the built service (dist/main.js) as a child process on 127.0.0.1 with its own data directory, the way an
// operator runs it, so tests can kill and restart it.
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { loopbackStorageEnv } from '../support/loopback-storage';
import { describeWhen } from '../support/service-check';

const MAIN = path.resolve(__dirname, '..', '..', 'dist', 'main.js');

export function dockerAvailable(): boolean {
  try {
    execFileSync('docker', ['info'], { stdio: 'ignore', timeout: 15_000 });
    return true;
  } catch {
    return false;
  }
}

/** `describe` when Docker answers; otherwise a skip with the reason, or a failure under CI=true. */
export function describeWithDocker(name: string, body: () => void): void {
  describeWhen(name, dockerAvailable(), 'no Docker engine answers on /var/run/docker.sock (run docker/start-dockerd.sh)', body);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** Runs the built service with these variables until it exits (killed after 30 s): its exit code and all it printed. */
export function runServiceUntilExit(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--no-warnings', MAIN], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TESP_LOGGING__LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (chunk: Buffer) => (output += chunk.toString());
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

export class ServiceProcess {
  private child?: ChildProcess;
  output = '';
  port = 0;

  constructor(
    readonly dataDir: string,
    private readonly env: Record<string, string> = {},
  ) {}

  static tempDataDir(): string {
    return mkdtempSync(path.join(os.tmpdir(), 'tesp-e2e-'));
  }

  /** The running process's id (to read its /proc entry), or undefined before start. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  get base(): string {
    return `http://127.0.0.1:${this.port}/ga4gh/tes/v1`;
  }

  async start(): Promise<void> {
    this.port = this.port || (await freePort());
    this.output = '';
    const child = spawn(process.execPath, ['--no-warnings', MAIN], {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        TESP_SERVER__HOST: '127.0.0.1',
        TESP_SERVER__PORT: String(this.port),
        TESP_DATA_DIR: this.dataDir,
        TESP_LOGGING__LEVEL: 'info',
        TESP_SCHEDULER__POLL_INTERVAL_MS: '100',
        // Short leases: a killed process's tasks are taken over within seconds.
        TESP_SCHEDULER__LEASE_MS: '3000',
        TESP_COMPUTE__LOCAL__PULL_IMAGES: 'false',
        TESP_COMPUTE__LOCAL__LOG_REFRESH_MS: '200',
        ...loopbackStorageEnv,
        ...this.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    child.stdout?.on('data', (d: Buffer) => (this.output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`tesp exited with ${child.exitCode}:\n${this.output}`);
      try {
        const res = await fetch(`${this.base}/service-info`);
        if (res.ok) return;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    throw new Error(`tesp did not start within 30 s:\n${this.output}`);
  }

  /** Resolves to the exit code of the running process when it exits. */
  exitCode(): Promise<number | null> {
    const child = this.child;
    if (!child) return Promise.resolve(null);
    if (child.exitCode !== null) return Promise.resolve(child.exitCode);
    return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  /** SIGTERM (graceful) or SIGKILL (crash); resolves when the process is gone. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await exited;
  }

  cleanup(): void {
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  async post(pathname: string, body: unknown): Promise<{ status: number; json: any }> {
    const res = await fetch(`${this.base}${pathname}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, json: await res.json() };
  }

  async get(pathname: string): Promise<{ status: number; json: any }> {
    const res = await fetch(`${this.base}${pathname}`);
    return { status: res.status, json: await res.json() };
  }

  async createTask(task: unknown): Promise<string> {
    const { status, json } = await this.post('/tasks', task);
    if (status !== 200) throw new Error(`create answered ${status}: ${JSON.stringify(json)}`);
    return json.id as string;
  }

  /** Polls until the task reaches one of `states` (default: any terminal state) and returns its FULL view. */
  waitFor(id: string, states: string[] = TERMINAL, timeoutMs = 60_000): Promise<any> {
    return this.waitUntil(id, (task) => states.includes(task.state), `reach ${states.join('/')}`, timeoutMs);
  }

  /** Polls until executor `index` of the task has started (its command runs), and returns the FULL view. */
  waitForExecutor(id: string, index = 0, timeoutMs = 60_000): Promise<any> {
    return this.waitUntil(id, (task) => Boolean(task.logs?.at(-1)?.logs?.[index]?.start_time), `start executors[${index}]`, timeoutMs);
  }

  private async waitUntil(id: string, done: (task: any) => boolean, what: string, timeoutMs: number): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    let last: any;
    while (Date.now() < deadline) {
      last = (await this.get(`/tasks/${id}?view=FULL`)).json;
      if (done(last)) return last;
      await sleep(100);
    }
    throw new Error(`task ${id} did not ${what} in ${timeoutMs} ms; last: ${JSON.stringify(last)}\n${this.output.slice(-4000)}`);
  }
}

export const TERMINAL = ['COMPLETE', 'EXECUTOR_ERROR', 'SYSTEM_ERROR', 'CANCELED'];

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Names of containers (running or not) labelled for a task. */
export function containersOf(taskId: string): string[] {
  const out = execFileSync('docker', ['ps', '-a', '--filter', `label=tesp.task=${taskId}`, '--format', '{{.Names}}'], { encoding: 'utf8' });
  return out.split('\n').filter(Boolean);
}

// Runs the built `tesp runner` (dist/main.js runner) as a child process on 127.0.0.1, port chosen by the OS at the
// first start and read from its log line, so tests can SIGKILL it and start it again on the same data directory and
// port (an API's runner entry keeps pointing at it).
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { loopbackStorageEnv } from '../support/loopback-storage';

const MAIN = path.resolve(__dirname, '..', '..', 'dist', 'main.js');
export const TOKEN = 's3cret';

export interface Answer {
  status: number;
  contentType: string;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json(): any;
}

export class RunnerProcess {
  private child?: ChildProcess;
  output = '';
  port = 0;

  constructor(
    readonly dataDir: string,
    private readonly env: Record<string, string> = {},
  ) {}

  static tempDataDir(): string {
    return mkdtempSync(path.join(os.tmpdir(), 'tesp-runner-'));
  }

  get stagingDir(): string {
    return path.join(this.dataDir, 'runner', 'jobs');
  }

  /** The compute.pulsar.runners entry for this runner (started once, so its port is known). */
  entry(name: string): string {
    return `${name}=http://${TOKEN}@127.0.0.1:${this.port}/`;
  }

  jobDir(id: string): string {
    return path.join(this.stagingDir, id);
  }

  async start(): Promise<void> {
    this.output = '';
    const child = spawn(process.execPath, ['--no-warnings', MAIN, 'runner'], {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: os.tmpdir(),
        TESP_DATA_DIR: this.dataDir,
        TESP_RUNNER__PORT: String(this.port),
        TESP_RUNNER__PRIVATE_TOKEN: TOKEN,
        TESP_COMPUTE__LOCAL__RUNTIME: 'process',
        TESP_LOGGING__LEVEL: 'info',
        ...loopbackStorageEnv,
        ...this.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const listening = new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`tesp runner did not start within 20 s:\n${this.output}`)), 20_000);
      child.stdout?.on('data', (d: Buffer) => {
        this.output += d.toString();
        for (const line of this.output.split('\n')) {
          if (!line.includes('tesp runner is serving the Pulsar REST API') && !line.includes('tesp runner is consuming its Pulsar queues')) continue;
          clearTimeout(timer);
          resolve(JSON.parse(line).port);
        }
      });
      child.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`tesp runner exited with ${code}:\n${this.output}`));
      });
    });
    this.port = await listening;
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

  /**
   * One request, the path sent exactly as given (no URL normalisation, so `..` reaches the server). `query` is
   * added to the path; the token too unless `token` is given (null: none).
   */
  call(method: string, pathname: string, options: { query?: Record<string, string>; token?: string | null; body?: string | Buffer; headers?: Record<string, string>; chunked?: boolean } = {}): Promise<Answer> {
    const query = new URLSearchParams(options.query ?? {});
    const token = options.token === undefined ? TOKEN : options.token;
    if (token !== null) query.set('private_token', token);
    const search = query.toString();
    const target = search ? `${pathname}${pathname.includes('?') ? '&' : '?'}${search}` : pathname;
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { ...(options.headers ?? {}) };
      if (options.body !== undefined && !options.chunked) headers['content-length'] = String(Buffer.byteLength(options.body));
      const req = request({ host: '127.0.0.1', port: this.port, method, path: target, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), headers: res.headers, text, json: () => JSON.parse(text) });
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      if (options.body !== undefined && options.chunked) {
        // Two writes without a length: Node sends Transfer-Encoding: chunked.
        const body = Buffer.from(options.body);
        req.write(body.subarray(0, Math.floor(body.length / 2)));
        setTimeout(() => req.end(body.subarray(Math.floor(body.length / 2))), 20);
      } else {
        req.end(options.body);
      }
    });
  }

  /** Polls the status until `complete` is "true"; returns it. */
  async waitDone(id: string, timeoutMs = 30_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    let last: any;
    while (Date.now() < deadline) {
      last = (await this.call('GET', `/jobs/${id}/status`)).json();
      if (last.complete === 'true') return last;
      await sleep(100);
    }
    throw new Error(`job ${id} not done in ${timeoutMs} ms; last: ${JSON.stringify(last)}\n${this.output.slice(-3000)}`);
  }

  async waitStatus(id: string, status: string, timeoutMs = 15_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    let last: any;
    while (Date.now() < deadline) {
      last = (await this.call('GET', `/jobs/${id}/status`)).json();
      if (last.status === status) return last;
      await sleep(50);
    }
    throw new Error(`job ${id} not ${status} in ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
  }

  /** Setup and submit in two calls, as Pulsar's client does. */
  async run(id: string, commandLine: string, extra: Record<string, string> = {}): Promise<void> {
    const setup = await this.call('POST', '/jobs', { query: { job_id: id } });
    if (setup.status !== 200) throw new Error(`setup answered ${setup.status}: ${setup.text}`);
    const submit = await this.call('POST', `/jobs/${id}/submit`, { query: { command_line: commandLine, ...extra } });
    if (submit.status !== 200 || submit.text !== 'OK') throw new Error(`submit answered ${submit.status}: ${submit.text}`);
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Whether a process group still has a live member (zombies, which an init may leave unreaped, do not count). */
export function groupAlive(pgid: number): boolean {
  for (const name of readdirSync('/proc').filter((entry) => /^\d+$/.test(entry))) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue;
    }
    const [state, , group] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(group) === pgid && state !== 'Z') return true;
  }
  return false;
}

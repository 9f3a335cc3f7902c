import type { Readable } from 'node:stream';
import { Agent, Dispatcher, request } from 'undici';
import type { RunnerEntry } from '../../config/runner-entries';
import type { ScriptRuntime } from '../../engine/job-script';

// Pulsar's REST API as the pulsar-protocol reference describes it (0.15): every parameter in the query string,
// JSON values as JSON strings, JSON answers labelled text/html, `complete` a string, errors as 500 or a dropped
// connection. The private_token travels as a query parameter; no message of this file contains a URL, so the
// token never reaches a log or a task.

export type PulsarJobState = 'preprocessing' | 'queued' | 'running' | 'postprocessing' | 'complete' | 'failed' | 'cancelled' | 'lost';

export interface PulsarStatus {
  status: PulsarJobState;
  complete: boolean;
  /** Parsed defensively: null when absent, empty or not a number. */
  returncode: number | null;
  job_stdout: string;
  job_stderr: string;
}

/** What a `tesp runner` says of itself (GET /tesp/capabilities); a real Pulsar has no such route. */
export interface RunnerCapabilities {
  tesp_runner: string;
  runtime: ScriptRuntime;
  /** 'slurm' when the runner's jobs are Slurm jobs. */
  scheduler?: string;
  staging_schemes: string[];
  active_jobs: number;
  queued_jobs: number;
  max_concurrent_jobs: number;
}

export class PulsarRequestError extends Error {
  constructor(
    message: string,
    /** A connection error, a timeout or a 5xx: the runner may answer again later. */
    readonly transient: boolean,
    readonly statusCode?: number,
  ) {
    super(message);
    this.name = 'PulsarRequestError';
  }
}

const STATES: readonly PulsarJobState[] = ['preprocessing', 'queued', 'running', 'postprocessing', 'complete', 'failed', 'cancelled', 'lost'];

export class PulsarRestClient {
  private readonly agent: Agent;

  constructor(
    readonly entry: RunnerEntry,
    private readonly timeoutMs: number,
  ) {
    this.agent = new Agent({ connectTimeout: Math.min(timeoutMs, 10_000), keepAliveTimeout: 10_000 });
  }

  async healthz(): Promise<{ version?: string }> {
    return (await this.json('health check', 'GET', '/healthz')) as { version?: string };
  }

  /** A tesp runner's capabilities; undefined for a runner without the route (a real Pulsar). */
  async capabilities(): Promise<RunnerCapabilities | undefined> {
    try {
      const body = (await this.json('capabilities', 'GET', '/tesp/capabilities')) as Partial<RunnerCapabilities>;
      return typeof body.tesp_runner === 'string' && Array.isArray(body.staging_schemes) ? (body as RunnerCapabilities) : undefined;
    } catch (err) {
      if (err instanceof PulsarRequestError && err.statusCode !== undefined && err.statusCode < 600) return undefined;
      throw err;
    }
  }

  /** Creates the job directory; resolves to the job id the runner uses (under assign_ids: uuid, its own). */
  async setup(jobId: string): Promise<string> {
    const body = (await this.json('setup', 'POST', '/jobs', { job_id: jobId, tool_id: 'tes-task', tool_version: '1.1' })) as { job_id?: unknown };
    if (typeof body.job_id !== 'string' || body.job_id === '') throw new PulsarRequestError(`setup of job ${jobId} on runner ${this.entry.name} answered no job_id`, false);
    return body.job_id;
  }

  /** Uploads a file's bytes (raw body, never multipart). `size` is sent as Content-Length when known. */
  async upload(jobId: string, name: string, type: string, body: string | Buffer | Readable, size?: number): Promise<void> {
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    const length = typeof body === 'string' ? Buffer.byteLength(body) : Buffer.isBuffer(body) ? body.length : size;
    if (length !== undefined) headers['content-length'] = String(length);
    const res = await this.send(`upload of ${name}`, 'POST', `/jobs/${enc(jobId)}/files`, { name, type }, { headers, body, bodyTimeout: this.timeoutMs });
    await res.body.dump();
  }

  async submit(jobId: string, commandLine: string): Promise<void> {
    const res = await this.send('submit', 'POST', `/jobs/${enc(jobId)}/submit`, {
      command_line: commandLine,
      params: '{}',
      setup_params: '{}',
      dependencies_description: 'null',
      env: '[]',
      remote_staging: '{}',
      submit_extras: '{}',
    });
    await res.body.dump();
  }

  async status(jobId: string): Promise<PulsarStatus> {
    const body = (await this.json('status', 'GET', `/jobs/${enc(jobId)}/status`)) as Record<string, unknown>;
    const status = STATES.includes(body.status as PulsarJobState) ? (body.status as PulsarJobState) : undefined;
    if (!status) throw new PulsarRequestError(`status of job ${jobId} on runner ${this.entry.name}: unknown status ${JSON.stringify(body.status)}`, true);
    const code = typeof body.returncode === 'number' ? body.returncode : typeof body.returncode === 'string' && /^-?\d+$/.test(body.returncode.trim()) ? Number(body.returncode) : null;
    return {
      status,
      complete: body.complete === 'true' || body.complete === true,
      returncode: code,
      job_stdout: typeof body.job_stdout === 'string' ? body.job_stdout : typeof body.stdout === 'string' ? body.stdout : '',
      job_stderr: typeof body.job_stderr === 'string' ? body.job_stderr : typeof body.stderr === 'string' ? body.stderr : '',
    };
  }

  async cancel(jobId: string): Promise<void> {
    await (await this.send('cancel', 'PUT', `/jobs/${enc(jobId)}/cancel`)).body.dump();
  }

  async clean(jobId: string): Promise<void> {
    await (await this.send('clean', 'DELETE', `/jobs/${enc(jobId)}`)).body.dump();
  }

  /**
   * A file of the job as a stream, with its length when known. With `lastBytes`, asks for the file's end only
   * (a tesp runner answers 206; a real Pulsar sends the whole file, and `partial` is false).
   */
  async download(jobId: string, name: string, type: string, options: { lastBytes?: number; signal?: AbortSignal } = {}): Promise<{ body: Readable; size?: number; partial: boolean }> {
    const headers: Record<string, string> = {};
    if (options.lastBytes !== undefined) headers.range = `bytes=-${options.lastBytes}`;
    const res = await this.send(`download of ${name}`, 'GET', `/jobs/${enc(jobId)}/files`, { name, type }, { headers, signal: options.signal, bodyTimeout: this.timeoutMs });
    const length = Number(res.headers['content-length']);
    return { body: res.body, size: Number.isFinite(length) ? length : undefined, partial: res.statusCode === 206 };
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  private async json(what: string, method: Dispatcher.HttpMethod, route: string, query: Record<string, string> = {}): Promise<unknown> {
    const res = await this.send(what, method, route, query);
    const text = await res.body.text();
    try {
      // Pulsar labels JSON text/html: parse whatever the content type says.
      return JSON.parse(text);
    } catch {
      throw new PulsarRequestError(`${what} on runner ${this.entry.name}: the answer is not JSON`, true);
    }
  }

  private async send(
    what: string,
    method: Dispatcher.HttpMethod,
    route: string,
    query: Record<string, string> = {},
    extra: { headers?: Record<string, string>; body?: string | Buffer | Readable; signal?: AbortSignal; bodyTimeout?: number } = {},
  ): Promise<Dispatcher.ResponseData> {
    const params = new URLSearchParams(query);
    if (this.entry.token !== undefined) params.set('private_token', this.entry.token);
    const url = `${this.entry.baseUrl}${route}?${params.toString()}`;
    let res: Dispatcher.ResponseData;
    try {
      res = await request(url, {
        method,
        headers: extra.headers,
        body: extra.body,
        signal: extra.signal,
        dispatcher: this.agent,
        headersTimeout: this.timeoutMs,
        bodyTimeout: extra.bodyTimeout ?? this.timeoutMs,
      });
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw err;
      const code = (err as { code?: string }).code;
      throw new PulsarRequestError(`${what} on runner ${this.entry.name}: ${code ?? (err as Error).name ?? 'request failed'}`, true);
    }
    if (res.statusCode >= 200 && res.statusCode < 300) return res;
    await res.body.dump().catch(() => undefined);
    const why = res.statusCode === 401 || res.statusCode === 403 ? ' (is its private_token right?)' : '';
    throw new PulsarRequestError(`${what} on runner ${this.entry.name}: HTTP ${res.statusCode}${why}`, res.statusCode >= 500 || res.statusCode === 429 || res.statusCode === 408, res.statusCode);
  }
}

function enc(segment: string): string {
  return encodeURIComponent(segment);
}

import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Logger } from '../common/logger';
import { errorMessage } from '../common/redact';
import { EnvError } from './command-script';
import { downloadPlacement, FileNameError, openForReadingInside, openForWritingInside, pathPlacement, relativePath, uploadPlacement } from './job-files';
import { JobManager, UnsafeJobIdError } from './job-manager';
import { statusBody } from './job-status';

// Pulsar 0.15's REST API as its clients expect it (pulsar-protocol reference §1-7): every parameter in the query
// string (JSON values as JSON strings), JSON answers labelled text/html, `OK` for routes without a result, every
// route also under /managers/_default_/, and errors as bare status codes. Where tesp is stricter than Pulsar it
// answers 400: job ids and file names that could leave their directory, malformed or missing parameters.

export const DEFAULT_MANAGER = '_default_';
const JSON_TYPE = 'text/html; charset=UTF-8';

export interface Capabilities {
  tesp_runner: string;
  runtime: string;
  /** 'slurm' when jobs are Slurm jobs. */
  scheduler?: string;
  staging_schemes: string[];
  active_jobs: number;
  queued_jobs: number;
  max_concurrent_jobs: number;
}

export interface PulsarRestOptions {
  manager: JobManager;
  /** Pulsar's private_token; '' when none is required. Never logged. */
  privateToken: string;
  version: string;
  capabilities: () => Capabilities;
  logger: Logger;
}

type RouteName = 'healthz' | 'capabilities' | 'setup' | 'clean' | 'submit' | 'status' | 'cancel' | 'upload' | 'download' | 'path';

interface Route {
  name: RouteName;
  manager: string;
  jobId?: string;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export function createPulsarRestServer(options: PulsarRestOptions): Server {
  // Pulsar's clients send long submit URLs (4 kB is ordinary); Node's 16 KiB header limit would cut longer ones.
  return createServer({ maxHeaderSize: 256 * 1024 }, (req, res) => {
    const started = Date.now();
    let routeName: string = 'unknown';
    handle(options, req, res, (name) => (routeName = name))
      .catch((err: unknown) => {
        const status = statusOf(err);
        const message = errorMessage(err);
        if (status >= 500) options.logger.warn({ method: req.method, route: routeName, status, err: message }, 'request failed');
        if (res.headersSent) return void res.destroy();
        req.resume();
        res.writeHead(status, { 'content-type': 'text/plain; charset=UTF-8' }).end(`${message}\n`);
      })
      .finally(() => options.logger.debug({ method: req.method, route: routeName, status: res.statusCode, ms: Date.now() - started }, 'request'));
  });
}

function statusOf(err: unknown): number {
  if (err instanceof HttpError) return err.status;
  if (err instanceof UnsafeJobIdError || err instanceof FileNameError || err instanceof EnvError) return 400;
  return 500;
}

async function handle(options: PulsarRestOptions, req: IncomingMessage, res: ServerResponse, named: (name: string) => void): Promise<void> {
  // Split by hand: URL parsing would resolve `/jobs/../status` to `/status`, hiding the job id the client sent.
  const target = req.url ?? '/';
  const queryStart = target.indexOf('?');
  const pathname = queryStart < 0 ? target : target.slice(0, queryStart);
  const query = new URLSearchParams(queryStart < 0 ? '' : target.slice(queryStart + 1));
  const route = matchRoute(req.method ?? 'GET', pathname);
  if (!route) throw new HttpError(404, 'not found');
  named(route.name);
  if (!tokenMatches(options.privateToken, query.get('private_token'))) throw new HttpError(401, 'a valid private_token is required');
  if (route.manager !== DEFAULT_MANAGER) throw new HttpError(500, `no manager named ${JSON.stringify(route.manager)}`);
  const { manager } = options;
  if (route.name !== 'upload') req.resume(); // bodies are never parameters
  const id = route.jobId ?? '';
  switch (route.name) {
    case 'healthz':
      return sendJson(res, { version: options.version });
    case 'capabilities':
      return sendJson(res, options.capabilities());
    case 'setup': {
      const jobId = required(query, 'job_id');
      const dir = await manager.setup(jobId);
      return sendJson(res, setupBody(options, jobId, dir, query));
    }
    case 'submit': {
      const launchConfig = {
        command_line: required(query, 'command_line'),
        env: jsonParam(query, 'env', []),
        params: jsonParam(query, 'params', {}),
        setup_params: jsonParam(query, 'setup_params', {}),
        remote_staging: jsonParam(query, 'remote_staging', {}),
        submit_extras: jsonParam(query, 'submit_extras', {}),
        dependencies_description: jsonParam(query, 'dependencies_description', null),
      };
      if (!Array.isArray(launchConfig.env)) throw new HttpError(400, 'env must be a JSON list');
      const remoteSetup = (launchConfig.remote_staging as { setup?: unknown[] } | null)?.setup;
      if (Array.isArray(remoteSetup) && remoteSetup.length > 0) {
        options.logger.warn({ job_id: id, files: remoteSetup.length }, 'remote_staging is not supported by tesp runner (it uses direct staging); its setup entries are ignored');
      }
      await manager.submit(id, {
        commandLine: launchConfig.command_line,
        env: launchConfig.env,
        setupParams: objectOf(launchConfig.setup_params, 'setup_params'),
        submitExtras: objectOf(launchConfig.submit_extras, 'submit_extras'),
        launchConfig,
      });
      return sendOk(res);
    }
    case 'status': {
      const status = await manager.status(id);
      return sendJson(res, await statusBody({ id, dir: manager.jobDir(id), status, version: options.version, systemProperties: systemProperties(options) }));
    }
    case 'cancel':
      await manager.cancel(id);
      return sendOk(res);
    case 'clean':
      await manager.clean(id);
      return sendOk(res);
    case 'upload': {
      const dir = manager.jobDir(id);
      const relative = relativePath(uploadPlacement(required(query, 'type')), required(query, 'name'));
      const handle = await openForWritingInside(dir, relative).catch((err: NodeJS.ErrnoException) => {
        throw err.code === 'ENOENT' ? new HttpError(500, `job ${id} was not set up`) : err;
      });
      await pipeline(req, handle.createWriteStream());
      return sendJson(res, { path: path.join(dir, relative) });
    }
    case 'download':
      return sendFile(req, res, manager.jobDir(id), relativePath(downloadPlacement(query.get('type') ?? 'output'), required(query, 'name')));
    case 'path':
      return sendJson(res, { path: path.join(manager.jobDir(id), relativePath(pathPlacement(query.get('type') ?? 'output'), required(query, 'name'))) });
  }
}

function matchRoute(method: string, pathname: string): Route | undefined {
  let segments: string[];
  try {
    segments = pathname.split('/').slice(1).map((segment) => decodeURIComponent(segment));
  } catch {
    return undefined;
  }
  let manager = DEFAULT_MANAGER;
  if (segments[0] === 'managers' && segments.length > 2) {
    manager = segments[1];
    segments = segments.slice(2);
  }
  const [first, jobId, action, sub, ...rest] = segments;
  if (rest.length > 0 || segments.some((segment) => segment === '')) return undefined;
  const is = (...allowed: string[]) => allowed.includes(method);
  if (segments.length === 1 && first === 'healthz' && is('GET', 'HEAD')) return { name: 'healthz', manager };
  if (segments.length === 2 && first === 'tesp' && jobId === 'capabilities' && is('GET', 'HEAD')) return { name: 'capabilities', manager };
  if (first !== 'jobs') return undefined;
  if (segments.length === 1) return is('POST') ? { name: 'setup', manager } : undefined;
  if (segments.length === 2) return is('DELETE') ? { name: 'clean', manager, jobId } : undefined;
  if (segments.length === 3) {
    if (action === 'submit' && is('POST')) return { name: 'submit', manager, jobId };
    if (action === 'status') return { name: 'status', manager, jobId }; // any method, as Pulsar
    if (action === 'cancel' && is('PUT')) return { name: 'cancel', manager, jobId };
    if (action === 'files' && is('POST')) return { name: 'upload', manager, jobId };
    if (action === 'files' && is('GET', 'HEAD')) return { name: 'download', manager, jobId };
    return undefined;
  }
  return action === 'files' && sub === 'path' && is('GET') ? { name: 'path', manager, jobId } : undefined;
}

/** Constant-time comparison (of digests, so the lengths match too). */
function tokenMatches(expected: string, given: string | null): boolean {
  if (expected === '') return true;
  if (given === null) return false;
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(expected), digest(given));
}

function required(query: URLSearchParams, name: string): string {
  const value = query.get(name);
  if (value === null || value === '') throw new HttpError(400, `the query parameter ${name} is required`);
  return value;
}

function jsonParam(query: URLSearchParams, name: string, fallback: unknown): unknown {
  const raw = query.get(name);
  if (raw === null || raw === '') return fallback;
  try {
    return JSON.parse(raw);
  } catch {
    throw new HttpError(400, `the query parameter ${name} is not JSON`);
  }
}

function objectOf(value: unknown, name: string): Record<string, unknown> {
  if (value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new HttpError(400, `${name} must be a JSON object`);
  return value as Record<string, unknown>;
}

function systemProperties(options: PulsarRestOptions): Record<string, unknown> {
  return { separator: '/', tesp_runner: options.capabilities() };
}

function setupBody(options: PulsarRestOptions, jobId: string, dir: string, query: URLSearchParams): Record<string, unknown> {
  const body: Record<string, unknown> = {
    job_directory: dir,
    working_directory: path.join(dir, 'working'),
    metadata_directory: path.join(dir, 'metadata'),
    outputs_directory: path.join(dir, 'outputs'),
    configs_directory: path.join(dir, 'configs'),
    tools_directory: path.join(dir, 'tool_files'),
    inputs_directory: path.join(dir, 'inputs'),
    unstructured_files_directory: path.join(dir, 'unstructured'),
    path_separator: '/',
    job_id: jobId,
    system_properties: systemProperties(options),
    pulsar_version: options.version,
    preserve_galaxy_python_environment: null,
  };
  for (const key of ['tool_id', 'tool_version']) {
    const value = query.get(key);
    if (value !== null) body[key] = value;
  }
  return body;
}

function sendJson(res: ServerResponse, body: unknown): void {
  res.writeHead(200, { 'content-type': JSON_TYPE }).end(JSON.stringify(body));
}

function sendOk(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': JSON_TYPE }).end('OK');
}

/**
 * Streams a file; a missing one is a 500, as in Pulsar. An extension tesp uses to read log tails cheaply: a
 * single `Range: bytes=A-[B]` or `bytes=-N` is answered with 206.
 */
async function sendFile(req: IncomingMessage, res: ServerResponse, dir: string, relative: string): Promise<void> {
  const handle = await openForReadingInside(dir, relative);
  if (!handle) throw new HttpError(500, `no file ${relative} in the job directory`);
  let closed = false;
  try {
    const size = (await handle.stat()).size;
    const range = size > 0 ? parseRange(req.headers.range, size) : undefined;
    if (range === 'unsatisfiable') {
      res.writeHead(416, { 'content-range': `bytes */${size}`, 'content-type': 'text/plain; charset=UTF-8' }).end();
      return;
    }
    const { start, end } = range ?? { start: 0, end: size - 1 };
    const headers = { 'content-type': JSON_TYPE, 'content-length': String(Math.max(end - start + 1, 0)), 'accept-ranges': 'bytes' };
    if (range) res.writeHead(206, { ...headers, 'content-range': `bytes ${start}-${end}/${size}` });
    else res.writeHead(200, headers);
    if (req.method === 'HEAD' || size === 0) {
      res.end();
      return;
    }
    closed = true; // the stream closes the handle
    await pipeline(handle.createReadStream({ start, end }), res);
  } finally {
    if (!closed) await handle.close();
  }
}

function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  const match = header ? /^bytes=(\d*)-(\d*)$/.exec(header.trim()) : null;
  if (!match || (match[1] === '' && match[2] === '')) return undefined; // absent, several ranges or malformed: the whole file
  if (match[1] === '') {
    const suffix = Number(match[2]);
    return suffix === 0 ? 'unsatisfiable' : { start: Math.max(size - suffix, 0), end: size - 1 };
  }
  const start = Number(match[1]);
  const end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  return start >= size || end < start ? 'unsatisfiable' : { start, end };
}

import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { request } from 'undici';
import { errorMessage, redactUrl } from '../common/redact';
import { listFiles, openForReadingInside, openForWritingInside, relativePath, uploadPlacement } from './job-files';

// Pulsar's `remote_staging` (pulsar-protocol reference §9), the part tesp's setup messages use: `message` and
// `remote_transfer` setup actions before the job, and after it every file below working/ and metadata/ whose name
// matches a `dynamic_outputs` pattern, posted to the action mapper's files_endpoint as multipart part `file` with
// `path=<client dir>/<name>&file_type=output_workdir|output_metadata`. As Pulsar: a 403 is not a failure, a
// working-directory file that cannot be posted does not fail the job, a metadata file does.

export interface RemoteStagingConfig {
  setup?: unknown[];
  action_mapper?: { files_endpoint?: unknown };
  client_outputs?: { working_directory?: unknown; metadata_directory?: unknown; dynamic_outputs?: unknown };
}

export interface StageOptions {
  signal: AbortSignal;
  /** How long a transfer is retried while the other side does not answer (tesp restarting). */
  retryMs: number;
  /** Setup items with these name prefixes are left out (the runner stages them itself: direct staging). */
  skipNames?: readonly string[];
  log: (line: string) => void;
}

/** The remote_staging of a launch config, when it has one. */
export function remoteStagingOf(launchConfig: Record<string, unknown> | undefined): RemoteStagingConfig | undefined {
  const value = launchConfig?.remote_staging;
  if (!value || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const config = value as RemoteStagingConfig;
  return Array.isArray(config.setup) || config.action_mapper ? config : undefined;
}

/** Writes the setup files into the job directory; the reason when one could not be written or fetched. */
export async function stageInRemote(jobDir: string, config: RemoteStagingConfig, options: StageOptions): Promise<string | undefined> {
  for (const item of config.setup ?? []) {
    const { name, type, action } = (item ?? {}) as { name?: unknown; type?: unknown; action?: { action_type?: unknown; contents?: unknown; url?: unknown } };
    if (typeof name !== 'string' || typeof type !== 'string' || !action) return 'a remote_staging setup item has no name, type or action';
    if (options.skipNames?.some((prefix) => name.startsWith(prefix))) continue;
    let target: string;
    try {
      target = relativePath(uploadPlacement(type), name);
    } catch (err) {
      return `remote_staging setup item ${JSON.stringify(name.slice(0, 100))}: ${errorMessage(err)}`;
    }
    try {
      if (action.action_type === 'message') {
        await writeInside(jobDir, target, Readable.from([Buffer.from(typeof action.contents === 'string' ? action.contents : '')]));
      } else if (action.action_type === 'remote_transfer' && typeof action.url === 'string') {
        const url = action.url;
        await retrying(options, `fetching ${name}`, async () => {
          const res = await request(url, { method: 'GET', signal: options.signal, headersTimeout: 60_000, bodyTimeout: 300_000 });
          if (res.statusCode !== 200) {
            await res.body.dump();
            throw new TransferError(`GET ${redactUrl(url)} answered ${res.statusCode}`, res.statusCode >= 500 || res.statusCode === 408 || res.statusCode === 429);
          }
          await writeInside(jobDir, target, res.body);
        });
      } else {
        return `remote_staging setup item ${JSON.stringify(name.slice(0, 100))}: action ${JSON.stringify(action.action_type)} is not supported by tesp runner (message, remote_transfer)`;
      }
    } catch (err) {
      return `stage-in of ${name}: ${errorMessage(err)}`;
    }
  }
  return undefined;
}

/**
 * Posts the files the client asked for; the reason when a metadata file could not be posted. With `skipWorking`
 * the working directory is left out (its outputs were staged directly).
 */
export async function stageOutRemote(jobDir: string, config: RemoteStagingConfig, options: StageOptions & { skipWorking: boolean }): Promise<string | undefined> {
  const endpoint = config.action_mapper?.files_endpoint;
  if (typeof endpoint !== 'string') return undefined;
  const outputs = config.client_outputs ?? {};
  const patterns = (Array.isArray(outputs.dynamic_outputs) ? outputs.dynamic_outputs : []).flatMap((p) => {
    try {
      // Python's re.match: anchored at the start only.
      return typeof p === 'string' ? [new RegExp(`^(?:${p})`)] : [];
    } catch {
      options.log(`dynamic_outputs pattern ${JSON.stringify(String(p).slice(0, 80))} is not a regular expression tesp runner reads; skipped`);
      return [];
    }
  });
  const directories: Array<{ sub: string; client: unknown; type: string; fatal: boolean }> = [
    { sub: 'working', client: outputs.working_directory, type: 'output_workdir', fatal: false },
    { sub: 'metadata', client: outputs.metadata_directory, type: 'output_metadata', fatal: true },
  ];
  for (const { sub, client, type, fatal } of directories) {
    if (typeof client !== 'string' || (sub === 'working' && options.skipWorking)) continue;
    for (const name of await listFiles(path.join(jobDir, sub), true, 100_000)) {
      if (!patterns.some((pattern) => pattern.test(name))) continue;
      const clientPath = path.posix.join(client, name);
      const url = `${endpoint}${endpoint.includes('?') ? '&' : '?'}${new URLSearchParams({ path: clientPath, file_type: type })}`;
      try {
        await retrying(options, `posting ${sub}/${name}`, () => postFile(jobDir, `${sub}/${name}`, url, options.signal));
      } catch (err) {
        const line = `posting ${sub}/${name} failed: ${errorMessage(err)}`;
        if (fatal) return line;
        options.log(line);
      }
    }
  }
  return undefined;
}

class TransferError extends Error {
  constructor(
    message: string,
    readonly transient: boolean,
  ) {
    super(message);
  }
}

async function postFile(jobDir: string, relative: string, url: string, signal: AbortSignal): Promise<void> {
  const handle = await openForReadingInside(jobDir, relative);
  if (!handle) return; // gone meanwhile (or a link leading out): nothing to post
  try {
    const size = (await handle.stat()).size;
    const boundary = `tesp-${randomBytes(12).toString('hex')}`;
    const filename = path.posix.basename(relative).replace(/["\r\n]/g, '_');
    const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\nContent-Type: application/octet-stream\r\n\r\n`);
    const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
    const file = handle.createReadStream({ start: 0, autoClose: false });
    const body = Readable.from((async function* () {
      yield head;
      for await (const chunk of file) yield chunk as Buffer;
      yield tail;
    })());
    const res = await request(url, {
      method: 'POST',
      body,
      signal,
      headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': String(head.length + size + tail.length) },
      headersTimeout: 300_000,
      bodyTimeout: 300_000,
    }).catch((err: unknown) => {
      throw new TransferError(`POST to tesp failed: ${(err as { code?: string }).code ?? errorMessage(err)}`, (err as Error).name !== 'AbortError');
    });
    const text = await res.body.text().catch(() => '');
    if (res.statusCode === 403) return; // refused for good (the task moved on): as Pulsar, not a failure
    if (res.statusCode < 200 || res.statusCode >= 300) {
      throw new TransferError(`tesp answered ${res.statusCode}: ${text.slice(0, 300)}`, res.statusCode >= 500 || res.statusCode === 408 || res.statusCode === 429);
    }
  } finally {
    await handle.close();
  }
}

async function writeInside(jobDir: string, relative: string, body: Readable): Promise<void> {
  const handle = await openForWritingInside(jobDir, relative);
  // The stream closes the handle when it is done (or destroyed).
  await pipeline(body, handle.createWriteStream());
}

/** Runs a transfer again while it fails transiently, backing off, for at most options.retryMs. */
async function retrying(options: StageOptions, what: string, transfer: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + options.retryMs;
  for (let delay = 250, tries = 1; ; delay = Math.min(delay * 2, 10_000), tries++) {
    try {
      await transfer();
      return;
    } catch (err) {
      const transient = err instanceof TransferError ? err.transient : (err as Error).name !== 'AbortError';
      if (!transient || options.signal.aborted || Date.now() + delay > deadline) throw err;
      if (tries === 1) options.log(`${what}: ${errorMessage(err)}; trying again for up to ${Math.round(options.retryMs / 1000)} s`);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

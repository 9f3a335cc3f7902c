// A small real HTTP file server on 127.0.0.1 for storage tests: GET/HEAD with byte ranges, PUT, and faults on
// demand (answers that fail first, bodies cut in the middle, redirects, Basic authentication).
import { createReadStream, createWriteStream, mkdirSync, promises as fs, statSync } from 'node:fs';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';

export interface HttpFileServer {
  server: Server;
  base: string;
  root: string;
  /** Requests seen, by method and path. */
  requests: string[];
  /** Answer the next N GETs of a path with this status. */
  failNext(pathname: string, times: number, status?: number): void;
  /** Cut the connection of the next GET of a path (whose range starts at or after `fromOffset`) after this many body bytes. */
  cutNext(pathname: string, afterBytes: number, fromOffset?: number): void;
  /** Redirect a path to another URL. */
  redirect(pathname: string, location: string): void;
  /** Require these Basic credentials for every request. */
  requireAuth(user: string, password: string): void;
  close(): Promise<void>;
}

export async function startHttpFileServer(root: string): Promise<HttpFileServer> {
  const failures = new Map<string, { times: number; status: number }>();
  const cuts = new Map<string, { afterBytes: number; fromOffset: number }>();
  const redirects = new Map<string, string>();
  let auth: string | undefined;
  const requests: string[] = [];

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const pathname = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    requests.push(`${req.method} ${pathname}${req.headers.range ? ` ${req.headers.range}` : ''}`);
    if (auth && req.headers.authorization !== auth) return void res.writeHead(401, { 'www-authenticate': 'Basic' }).end();
    const location = redirects.get(pathname);
    if (location) return void res.writeHead(302, { location }).end();
    const failure = failures.get(pathname);
    if (failure && failure.times > 0 && req.method !== 'PUT') {
      failure.times -= 1;
      return void res.writeHead(failure.status, { 'content-type': 'text/plain' }).end('failing on purpose');
    }
    const file = path.join(root, pathname);
    if (!file.startsWith(root)) return void res.writeHead(403).end();
    if (req.method === 'PUT') {
      mkdirSync(path.dirname(file), { recursive: true });
      await pipeline(req, createWriteStream(file));
      return void res.writeHead(201).end();
    }
    let size: number;
    let mtime: Date;
    try {
      const info = statSync(file);
      if (!info.isFile()) throw new Error('not a file');
      size = info.size;
      mtime = info.mtime;
    } catch {
      return void res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    }
    const headers: Record<string, string | number> = { 'accept-ranges': 'bytes', etag: `"${size}-${mtime.getTime()}"`, 'content-type': 'application/octet-stream' };
    let start = 0;
    let end = size - 1;
    const range = /^bytes=(\d+)-(\d*)$/.exec(String(req.headers.range ?? ''));
    if (range) {
      start = Number(range[1]);
      end = range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
      if (start >= size) return void res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
      res.writeHead(206, { ...headers, 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${size}` });
    } else {
      res.writeHead(200, { ...headers, 'content-length': size });
    }
    if (req.method === 'HEAD') return void res.end();
    const cut = cuts.get(pathname);
    if (cut !== undefined && start >= cut.fromOffset) {
      cuts.delete(pathname);
      const stream = createReadStream(file, { start, end: Math.min(end, start + cut.afterBytes - 1) });
      stream.on('data', (chunk) => res.write(chunk));
      stream.on('end', () => res.socket?.destroy());
      return;
    }
    if (size === 0) return void res.end();
    createReadStream(file, { start, end }).pipe(res);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => res.writeHead(500).end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    server,
    base: `http://127.0.0.1:${port}`,
    root,
    requests,
    failNext: (pathname, times, status = 503) => void failures.set(pathname, { times, status }),
    cutNext: (pathname, afterBytes, fromOffset = 0) => void cuts.set(pathname, { afterBytes, fromOffset }),
    redirect: (pathname, location) => void redirects.set(pathname, location),
    requireAuth: (user, password) => void (auth = 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64')),
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

export async function writeRandomFile(file: string, bytes: number): Promise<void> {
  mkdirSync(path.dirname(file), { recursive: true });
  const { randomBytes } = await import('node:crypto');
  await fs.writeFile(file, randomBytes(bytes));
}

/** Fast retry settings for tests. */
export const httpTestSettings = {
  max_redirects: 3,
  retries: 3,
  retry_base_ms: 20,
  retry_max_ms: 200,
  connect_timeout_ms: 2000,
  idle_timeout_ms: 5000,
  max_input_bytes: 0,
  // The test servers listen on loopback.
  allow_private_addresses: true,
  allowed_private_cidrs: [] as string[],
};

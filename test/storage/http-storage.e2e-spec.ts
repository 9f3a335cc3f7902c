// HTTP staging against a real local HTTP server: retries, resume, redirects, credentials, memory.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { DomainError } from '../../src/domain/domain-error';
import { HttpStorageBackend } from '../../src/storage/http/http-storage.backend';
import { HttpFileServer, httpTestSettings, startHttpFileServer, writeRandomFile } from '../support/http-file-server';

describe('HttpStorageBackend against a local HTTP server', () => {
  let root: string;
  let local: string;
  let server: HttpFileServer;
  let backend: HttpStorageBackend;

  beforeEach(async () => {
    root = mkdtempSync(path.join(os.tmpdir(), 'tesp-http-root-'));
    local = mkdtempSync(path.join(os.tmpdir(), 'tesp-http-local-'));
    server = await startHttpFileServer(root);
    backend = new HttpStorageBackend(httpTestSettings);
  });

  afterEach(async () => {
    await backend.close();
    await server.close();
    rmSync(root, { recursive: true, force: true });
    rmSync(local, { recursive: true, force: true });
  });

  const digest = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

  it('retries 503 answers with backoff and then succeeds', async () => {
    await writeRandomFile(path.join(root, 'flaky.bin'), 4096);
    server.failNext('/flaky.bin', 2, 503);
    await backend.download(`${server.base}/flaky.bin`, path.join(local, 'flaky.bin'));
    expect(server.requests.filter((r) => r.startsWith('GET /flaky.bin'))).toHaveLength(3);
    expect(digest(path.join(local, 'flaky.bin'))).toBe(digest(path.join(root, 'flaky.bin')));
  });

  it('gives up after the configured retries', async () => {
    await writeRandomFile(path.join(root, 'down.bin'), 10);
    server.failNext('/down.bin', 10, 502);
    await expect(backend.download(`${server.base}/down.bin`, path.join(local, 'down.bin'))).rejects.toThrow(/answered HTTP 502/);
    expect(server.requests.filter((r) => r.startsWith('GET /down.bin'))).toHaveLength(httpTestSettings.retries + 1);
  });

  it('resumes a read stream with Range and If-Range after the connection is cut, with the right bytes', async () => {
    const size = 3 * 1024 * 1024 + 5;
    await writeRandomFile(path.join(root, 'streamed.bin'), size);
    server.cutNext('/streamed.bin', 1024 * 1024);
    const stream = await backend.openRead(`${server.base}/streamed.bin`);
    const hash = createHash('sha256');
    for await (const chunk of stream) hash.update(chunk as Buffer);
    expect(hash.digest('hex')).toBe(digest(path.join(root, 'streamed.bin')));
    const resumed = server.requests.filter((r) => /^GET \/streamed\.bin bytes=[1-9]\d*-$/.test(r));
    expect(resumed).toHaveLength(1);
  });

  it('resumes with Range after the connection is cut in the middle of the body', async () => {
    const size = 5 * 1024 * 1024 + 123;
    await writeRandomFile(path.join(root, 'cut.bin'), size);
    server.cutNext('/cut.bin', 2 * 1024 * 1024);
    expect(await backend.download(`${server.base}/cut.bin`, path.join(local, 'cut.bin'))).toBe(size);
    expect(digest(path.join(local, 'cut.bin'))).toBe(digest(path.join(root, 'cut.bin')));
    // The second request resumes from what reached the disk, at most where the cut was.
    const resumed = server.requests.map((r) => /^GET \/cut\.bin bytes=(\d+)-\d*$/.exec(r)).filter((m) => m && m[1] !== '0');
    expect(resumed).toHaveLength(1);
    expect(Number(resumed[0]![1])).toBeGreaterThan(0);
    expect(Number(resumed[0]![1])).toBeLessThanOrEqual(2 * 1024 * 1024);
  });

  it('downloads a large object as parallel ranged parts', async () => {
    const size = 20 * 1024 * 1024 + 5;
    await writeRandomFile(path.join(root, 'large.bin'), size);
    const parallel = new HttpStorageBackend(httpTestSettings, { partBytes: 1024 * 1024, parallel: 4 });
    try {
      expect(await parallel.download(`${server.base}/large.bin`, path.join(local, 'large.bin'))).toBe(size);
    } finally {
      await parallel.close();
    }
    expect(digest(path.join(local, 'large.bin'))).toBe(digest(path.join(root, 'large.bin')));
    const ranges = server.requests.filter((r) => r.startsWith('GET /large.bin bytes='));
    expect(ranges).toHaveLength(21);
    expect(ranges).toContain(`GET /large.bin bytes=${20 * 1024 * 1024}-${20 * 1024 * 1024 + 4}`);
  });

  it('retries only the part whose connection was cut, from where it stopped', async () => {
    const size = 8 * 1024 * 1024;
    await writeRandomFile(path.join(root, 'parts.bin'), size);
    server.cutNext('/parts.bin', 300 * 1024, 5 * 1024 * 1024);
    const parallel = new HttpStorageBackend(httpTestSettings, { partBytes: 1024 * 1024, parallel: 3 });
    try {
      await parallel.download(`${server.base}/parts.bin`, path.join(local, 'parts.bin'));
    } finally {
      await parallel.close();
    }
    expect(digest(path.join(local, 'parts.bin'))).toBe(digest(path.join(root, 'parts.bin')));
    const partFive = server.requests.filter((r) => /^GET \/parts\.bin bytes=5\d{6}-6291455$/.test(r));
    expect(partFive).toHaveLength(2);
    expect(partFive[1]).not.toBe(partFive[0]); // the retry starts inside the part, not at its beginning
    expect(server.requests.filter((r) => r.startsWith('GET /parts.bin'))).toHaveLength(9);
  });

  it('downloads an empty object', async () => {
    await writeRandomFile(path.join(root, 'empty.bin'), 0);
    expect(await backend.download(`${server.base}/empty.bin`, path.join(local, 'empty.bin'))).toBe(0);
    expect(readFileSync(path.join(local, 'empty.bin')).length).toBe(0);
  });

  it('does not retry a 404 and keeps credentials out of the message', async () => {
    const attempt = backend.download(`http://tes:s3cret@127.0.0.1:${new URL(server.base).port}/absent.txt`, path.join(local, 'absent.txt'));
    await expect(attempt).rejects.toBeInstanceOf(DomainError);
    const message = await attempt.catch((err: Error) => err.message);
    expect(message).toMatch(/answered HTTP 404/);
    expect(message).not.toContain('s3cret');
    expect(server.requests.filter((r) => r.startsWith('GET /absent.txt'))).toHaveLength(1);
  });

  it('sends credentials from the URL as Basic authentication', async () => {
    await writeRandomFile(path.join(root, 'private.bin'), 100);
    server.requireAuth('tes', 'p@ss word');
    await expect(backend.download(`${server.base}/private.bin`, path.join(local, 'a.bin'))).rejects.toThrow(/401/);
    const port = new URL(server.base).port;
    await backend.download(`http://tes:p%40ss%20word@127.0.0.1:${port}/private.bin`, path.join(local, 'b.bin'));
    expect(digest(path.join(local, 'b.bin'))).toBe(digest(path.join(root, 'private.bin')));
  });

  it('follows redirects and refuses too many', async () => {
    await writeRandomFile(path.join(root, 'target.bin'), 64);
    server.redirect('/hop1', `${server.base}/target.bin`);
    await backend.download(`${server.base}/hop1`, path.join(local, 'hop.bin'));
    expect(digest(path.join(local, 'hop.bin'))).toBe(digest(path.join(root, 'target.bin')));
    server.redirect('/loop', `${server.base}/loop`);
    await expect(backend.download(`${server.base}/loop`, path.join(local, 'loop.bin'))).rejects.toThrow(/more than 3 redirects/);
  });

  it('refuses http(s) directory listings with a clear message', async () => {
    await expect(backend.list(`${server.base}/dir/`)).rejects.toThrow(/DIRECTORY inputs are not supported/);
  });

  it('checks the size against Content-Length and the configured maximum', async () => {
    await writeRandomFile(path.join(root, 'big.bin'), 2048);
    const limited = new HttpStorageBackend({ ...httpTestSettings, max_input_bytes: 1024 });
    try {
      await expect(limited.download(`${server.base}/big.bin`, path.join(local, 'big.bin'))).rejects.toThrow(/exceed storage\.http\.max_input_bytes/);
    } finally {
      await limited.close();
    }
  });

  it('streams a 256 MiB download without holding it in memory', async () => {
    const size = 256 * 1024 * 1024;
    const chunk = Buffer.alloc(1024 * 1024, 7);
    const generator = createServer((req, res) => {
      res.writeHead(200, { 'content-length': size });
      let sent = 0;
      const pump = () => {
        while (sent < size) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
    await new Promise<void>((resolve) => generator.listen(0, '127.0.0.1', resolve));
    const port = (generator.address() as { port: number }).port;
    global.gc?.();
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    try {
      const bytes = await backend.download(`http://127.0.0.1:${port}/stream`, path.join(local, 'stream.bin'));
      expect(bytes).toBe(size);
    } finally {
      clearInterval(sampler);
      generator.close();
    }
    expect(peak - before).toBeLessThan(64 * 1024 * 1024);
  });

  it('uploads by PUT with the file size', async () => {
    await writeRandomFile(path.join(local, 'up.bin'), 3000);
    expect(await backend.upload(path.join(local, 'up.bin'), `${server.base}/dest/up.bin`)).toEqual({ bytes: 3000, sha256: digest(path.join(local, 'up.bin')) });
    expect(digest(path.join(root, 'dest/up.bin'))).toBe(digest(path.join(local, 'up.bin')));
  });
});

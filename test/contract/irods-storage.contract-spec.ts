// The iRODS backend against the iRODS HTTP API test double (test/doubles): no iRODS server can run here, so the
// double reproduces the protocol, its limits and its quirks, and injects the faults a real deployment shows.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { DomainError, ErrorCode } from '../../src/domain/domain-error';
import { IrodsStorageBackend, IrodsStorageSettings } from '../../src/storage/irods/irods-storage.backend';
import { IrodsDoubleOptions, IrodsHttpApiDouble } from '../doubles/irods-http-api.double';
import { startCuttingProxy } from '../support/cutting-proxy';
import { describeStorageBackendContract } from './storage-backend.contract';

const HOME = '/tempZone/home/alice';
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

function settingsFor(double: IrodsHttpApiDouble, extra: Partial<IrodsStorageSettings> = {}): IrodsStorageSettings {
  return {
    zones: [`tempZone=${double.baseUrl}`],
    credentials: ['tempZone=alice:apass'],
    access_tokens: [],
    write_streams: 3,
    chunk_size_mb: 8,
    verify_checksums: true,
    idle_timeout_ms: 2000,
    retries: 3,
    retry_base_ms: 5,
    retry_max_ms: 50,
    ...extra,
  };
}

describeStorageBackendContract('irods (HTTP API double)', async () => {
  // A 1 MiB body limit: chunks of 1 MiB less the framing margin, so a stream of several chunks stays small.
  const double = await new IrodsHttpApiDouble({ maxBodyBytes: 1024 * 1024 }).start();
  const backend = new IrodsStorageBackend(settingsFor(double), { partBytes: 1024 * 1024, parallel: 4 });
  return {
    backend,
    streamPartBytes: 1024 * 1024 - 64 * 1024,
    urlFor: (rel) => `irods://tempZone/home/alice/${rel}`,
    seed: async (rel, data) => double.seed(`${HOME}/${rel}`, data),
    read: async (rel) => {
      const bytes = double.object(`${HOME}/${rel}`);
      if (!bytes) throw new Error(`no data object ${rel}`);
      return bytes;
    },
    cleanup: async () => {
      await backend.close();
      await double.close();
    },
  };
});

describe('IrodsStorageBackend against the HTTP API double', () => {
  let local: string;
  let double: IrodsHttpApiDouble;
  let backend: IrodsStorageBackend;
  let opened: { close(): Promise<void> }[] = [];

  const start = async (options: IrodsDoubleOptions = {}, extra: Partial<IrodsStorageSettings> = {}, reads = { partBytes: 1024 * 1024, parallel: 3 }) => {
    double = await new IrodsHttpApiDouble(options).start();
    backend = new IrodsStorageBackend(settingsFor(double, extra), reads);
    opened.push(backend, double);
  };
  const file = (name: string, data: Buffer) => {
    const p = path.join(local, name);
    writeFileSync(p, data);
    return p;
  };

  beforeEach(() => {
    local = mkdtempSync(path.join(os.tmpdir(), 'tesp-irods-local-'));
  });

  afterEach(async () => {
    for (const resource of opened) await resource.close();
    opened = [];
    rmSync(local, { recursive: true, force: true });
  });

  it('uploads by parallel write: one stream per worker, chunks below the body limit, shutdown, checksum verified', async () => {
    await start({ maxBodyBytes: 1024 * 1024 }, { write_streams: 3, chunk_size_mb: 8 });
    const data = randomBytes(10 * 1024 * 1024 + 13);
    const result = await backend.upload(file('big.bin', data), 'irods://tempZone/home/alice/new/dir/big.bin');
    expect(result).toEqual({ bytes: data.length, sha256: sha256(data) });
    expect(sha256(double.object(`${HOME}/new/dir/big.bin`)!)).toBe(sha256(data));
    // The 8 MiB chunk setting was clamped below the server's 1 MiB body limit (a longer body gets no answer).
    expect(double.largestRequestBody()).toBeLessThanOrEqual(1024 * 1024);
    expect(double.requests('data-objects:write')).toBe(Math.ceil(data.length / (1024 * 1024 - 64 * 1024)));
    expect(double.requests('data-objects:parallel_write_init')).toBe(1);
    expect(double.requests('data-objects:parallel_write_shutdown')).toBe(1);
    expect(double.requests('data-objects:calculate_checksum')).toBe(1);
    expect(double.concurrentStreamUse).toEqual([]);
    expect(double.rewrittenChunks).toEqual([]);
    expect(double.openHandles()).toEqual([]);
  });

  it('uploads a stream by parallel write from bounded chunks, verified, and reads it back as a stream', async () => {
    await start({ maxBodyBytes: 512 * 1024 }, { write_streams: 3 });
    const data = randomBytes(3 * 1024 * 1024 + 9);
    const pieces = Array.from({ length: Math.ceil(data.length / 100_000) }, (_, i) => data.subarray(i * 100_000, (i + 1) * 100_000));
    const result = await backend.uploadStream(Readable.from(pieces), 'irods://tempZone/home/alice/streamed.bin');
    expect(result).toEqual({ bytes: data.length, sha256: sha256(data) });
    expect(sha256(double.object(`${HOME}/streamed.bin`)!)).toBe(sha256(data));
    expect(double.largestRequestBody()).toBeLessThanOrEqual(512 * 1024);
    expect(double.requests('data-objects:parallel_write_init')).toBe(1);
    expect(double.requests('data-objects:parallel_write_shutdown')).toBe(1);
    expect(double.requests('data-objects:calculate_checksum')).toBe(1);
    expect(double.concurrentStreamUse).toEqual([]);
    expect(double.openHandles()).toEqual([]);
    const hash = createHash('sha256');
    for await (const chunk of await backend.openRead('irods://tempZone/home/alice/streamed.bin')) hash.update(chunk as Buffer);
    expect(hash.digest('hex')).toBe(sha256(data));
  });

  it('fails a corrupted stream upload clearly (it cannot be sent again) and removes the object', async () => {
    await start({ maxBodyBytes: 256 * 1024 });
    double.faults.corruptWrites = 1;
    const data = randomBytes(700 * 1024);
    const err = await backend.uploadStream(Readable.from([data]), 'irods://tempZone/home/alice/bad.bin').catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/bad\.bin: checksum mismatch after upload .*; a stream cannot be sent again$/);
    expect(double.object(`${HOME}/bad.bin`)).toBeUndefined();
    expect(double.openHandles()).toEqual([]);
  });

  it('clamps the stream count to the per-handle limit from /info', async () => {
    await start({ maxBodyBytes: 512 * 1024, streamsPerHandle: 2 }, { write_streams: 16 });
    const data = randomBytes(3 * 1024 * 1024);
    await backend.upload(file('a.bin', data), 'irods://tempZone/home/alice/a.bin');
    expect(double.requests('data-objects:parallel_write_init')).toBe(1);
    expect(sha256(double.object(`${HOME}/a.bin`)!)).toBe(sha256(data));
    expect(double.concurrentStreamUse).toEqual([]);
  });

  it('speaks 0.5.0: multipart writes (raw values, so + and UTF-8 survive) and the old /info names', async () => {
    await start({ version: '0.5.0', maxBodyBytes: 256 * 1024, streamsPerHandle: 2 }, { write_streams: 4 });
    const data = randomBytes(1024 * 1024 + 7);
    await backend.upload(file('u.bin', data), 'irods://tempZone/home/alice/r%C3%A9sultat%20final/u.bin');
    expect(sha256(double.object(`${HOME}/résultat final/u.bin`)!)).toBe(sha256(data));
    const back = path.join(local, 'back.bin');
    expect(await backend.download('irods://tempZone/home/alice/r%C3%A9sultat%20final/u.bin', back)).toBe(data.length);
    expect(sha256(readFileSync(back))).toBe(sha256(data));
  });

  it('sends a small file as one truncating write and a zero-byte file as an empty one', async () => {
    await start();
    double.seed(`${HOME}/small.txt`, Buffer.from('old and longer content'));
    await backend.upload(file('small.txt', Buffer.from('new')), 'irods://tempZone/home/alice/small.txt');
    expect(double.object(`${HOME}/small.txt`)!.toString()).toBe('new');
    // Header writes carry the path's UTF-8 bytes.
    await backend.upload(file('u.txt', Buffer.from('unicode')), 'irods://tempZone/home/alice/%C3%A9t%C3%A9.txt');
    expect(double.object(`${HOME}/été.txt`)!.toString()).toBe('unicode');
    await backend.upload(file('empty', Buffer.alloc(0)), 'irods://tempZone/home/alice/empty');
    expect(double.object(`${HOME}/empty`)!.length).toBe(0);
    expect(double.requests('data-objects:parallel_write_init')).toBe(0);
    expect(await backend.download('irods://tempZone/home/alice/empty', path.join(local, 'e'))).toBe(0);
    expect(readFileSync(path.join(local, 'e')).length).toBe(0);
  });

  it('logs in once more when the token lapses mid-transfer, and sends no chunk twice', async () => {
    await start({ maxBodyBytes: 256 * 1024 });
    const data = randomBytes(3 * 1024 * 1024);
    double.faults.expireTokensAfter = 6;
    await backend.upload(file('t.bin', data), 'irods://tempZone/home/alice/t.bin');
    expect(sha256(double.object(`${HOME}/t.bin`)!)).toBe(sha256(data));
    expect(double.requests('authenticate:')).toBe(2);
    expect(double.rewrittenChunks).toEqual([]);
    expect(double.openHandles()).toEqual([]);
  });

  it('retries a failed write on the same stream, and a dropped connection, without restarting the file', async () => {
    await start({ maxBodyBytes: 256 * 1024 });
    const data = randomBytes(2 * 1024 * 1024 + 5);
    double.faults.failWrites = 2;
    double.faults.drop = { op: 'data-objects:write', times: 1 };
    await backend.upload(file('r.bin', data), 'irods://tempZone/home/alice/r.bin');
    expect(sha256(double.object(`${HOME}/r.bin`)!)).toBe(sha256(data));
    expect(double.requests('data-objects:parallel_write_init')).toBe(1);
    expect(double.requests('data-objects:write')).toBe(Math.ceil(data.length / (192 * 1024)) + 3);
    expect(double.concurrentStreamUse).toEqual([]);
  });

  it('restarts the whole transfer when the server says its stream went bad, shutting the first handle', async () => {
    await start({ maxBodyBytes: 256 * 1024 });
    const data = randomBytes(1024 * 1024);
    double.faults.breakStreamOnWrite = 1;
    await backend.upload(file('b.bin', data), 'irods://tempZone/home/alice/b.bin');
    expect(sha256(double.object(`${HOME}/b.bin`)!)).toBe(sha256(data));
    expect(double.requests('data-objects:parallel_write_init')).toBe(2);
    expect(double.requests('data-objects:parallel_write_shutdown')).toBe(2);
    expect(double.openHandles()).toEqual([]);
  });

  it('backs off when parallel_write_init answers 503 (the global stream cap)', async () => {
    await start({ maxBodyBytes: 256 * 1024 });
    double.faults.rejectInits = 2;
    const data = randomBytes(600 * 1024);
    await backend.upload(file('c.bin', data), 'irods://tempZone/home/alice/c.bin');
    expect(double.requests('data-objects:parallel_write_init')).toBe(3);
    expect(sha256(double.object(`${HOME}/c.bin`)!)).toBe(sha256(data));
  });

  it('shuts the handle down when an upload fails for good, and when it is canceled', async () => {
    await start({ maxBodyBytes: 256 * 1024 }, { retries: 1 });
    double.faults.failWrites = 100;
    const failed = await backend.upload(file('f.bin', randomBytes(1024 * 1024)), 'irods://tempZone/home/alice/f.bin').catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(DomainError);
    expect((failed as Error).message).toMatch(/irods:\/\/tempZone\/home\/alice\/f\.bin: HTTP 500/);
    expect(double.requests('data-objects:parallel_write_shutdown')).toBe(1);
    expect(double.openHandles()).toEqual([]);

    double.faults.failWrites = 0;
    double.faults.slowMs = 50;
    const controller = new AbortController();
    const upload = backend.upload(file('g.bin', randomBytes(2 * 1024 * 1024)), 'irods://tempZone/home/alice/g.bin', { signal: controller.signal });
    const writes = double.requests('data-objects:write');
    while (double.requests('data-objects:write') === writes) await new Promise((resolve) => setTimeout(resolve, 2));
    controller.abort();
    await expect(upload).rejects.toThrow();
    double.faults.slowMs = 0;
    for (let i = 0; i < 100 && double.openHandles().length > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(double.requests('data-objects:parallel_write_shutdown')).toBe(2);
    expect(double.openHandles()).toEqual([]);
  });

  it('catches a corrupted upload by checksum: sends it once more, and fails clearly if it stays corrupt', async () => {
    await start({ maxBodyBytes: 256 * 1024 });
    const data = randomBytes(700 * 1024);
    double.faults.corruptWrites = 1;
    await backend.upload(file('x.bin', data), 'irods://tempZone/home/alice/x.bin');
    expect(sha256(double.object(`${HOME}/x.bin`)!)).toBe(sha256(data));
    expect(double.requests('data-objects:calculate_checksum')).toBe(2);

    double.faults.corruptWrites = 1000;
    const err = await backend.upload(file('y.bin', data), 'irods://tempZone/home/alice/y.bin').catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/y\.bin: checksum mismatch after upload \(iRODS sha2:.+, sent sha2:.+\)/);
    expect(double.openHandles()).toEqual([]);
  });

  it('compares MD5 checksums on an MD5 zone', async () => {
    await start({ checksum: 'md5' });
    const data = Buffer.from('md5 zone data');
    await backend.upload(file('m.txt', data), 'irods://tempZone/home/alice/m.txt');
    expect(double.requests('data-objects:calculate_checksum')).toBe(1);
    expect(double.object(`${HOME}/m.txt`)!.toString()).toBe('md5 zone data');
  });

  it('downloads by parallel ranged reads and recovers from a truncated and a stalled read', async () => {
    await start({ readBufferBytes: 64 * 1024 }, { idle_timeout_ms: 300 });
    const data = randomBytes(5 * 1024 * 1024 + 3);
    double.seed(`${HOME}/in.bin`, data);
    double.faults.reads = { after: 300 * 1024, mode: 'truncate', times: 1 };
    const one = path.join(local, 'one.bin');
    expect(await backend.download('irods://tempZone/home/alice/in.bin', one)).toBe(data.length);
    expect(sha256(readFileSync(one))).toBe(sha256(data));
    expect(double.requests('data-objects:read')).toBe(7);

    double.faults.reads = { after: 100 * 1024, mode: 'stall', times: 1 };
    const two = path.join(local, 'two.bin');
    expect(await backend.download('irods://tempZone/home/alice/in.bin', two)).toBe(data.length);
    expect(sha256(readFileSync(two))).toBe(sha256(data));
  });

  it('recovers from a TCP connection cut in the middle of a download and of an upload, with the right bytes', async () => {
    await start({ maxBodyBytes: 1024 * 1024 });
    const proxy = await startCuttingProxy(double.port);
    opened.unshift(proxy);
    const viaProxy = new IrodsStorageBackend(settingsFor(double, { zones: [`tempZone=http://127.0.0.1:${proxy.port}/irods-http-api/0.7.0`] }), { partBytes: 2 * 1024 * 1024, parallel: 2 });
    opened.unshift(viaProxy);
    const data = randomBytes(9 * 1024 * 1024);
    double.seed(`${HOME}/cut.bin`, data);
    proxy.armCut(1024 * 1024 + 100);
    const destination = path.join(local, 'cut.bin');
    expect(await viaProxy.download('irods://tempZone/home/alice/cut.bin', destination)).toBe(data.length);
    expect(proxy.cuts()).toBe(1);
    expect(sha256(readFileSync(destination))).toBe(sha256(data));

    // Upload answers are small: the cut lands on a connection that is carrying writes.
    proxy.armCut(200);
    await viaProxy.upload(destination, 'irods://tempZone/home/alice/cut-back.bin');
    expect(proxy.cuts()).toBe(2);
    expect(sha256(double.object(`${HOME}/cut-back.bin`)!)).toBe(sha256(data));
    expect(double.openHandles()).toEqual([]);
  });

  it('refuses a download whose bytes do not match the checksum iRODS holds', async () => {
    await start();
    const data = randomBytes(200 * 1024);
    await backend.upload(file('c.bin', data), 'irods://tempZone/home/alice/c.bin');
    double.corrupt(`${HOME}/c.bin`);
    const destination = path.join(local, 'c.bin');
    await expect(backend.download('irods://tempZone/home/alice/c.bin', destination)).rejects.toThrow(/checksum mismatch after download/);
    expect(() => readFileSync(destination)).toThrow();
  });

  it('treats collections as DIRECTORY and lists them through paged GenQuery', async () => {
    await start({ maxRows: 4 });
    const names = ['a.txt', 'b_c.txt', 'sub/one.txt', 'sub/deeper/two.txt', ...Array.from({ length: 9 }, (_, i) => `many/f${i}.txt`)];
    for (const name of names) double.seed(`${HOME}/tree/${name}`, Buffer.from(name));
    double.seed(`${HOME}/tree2/not-mine.txt`, Buffer.from('x'));
    double.seed(`${HOME}/treeXsub/not-mine.txt`, Buffer.from('x'));
    double.mkdirs(`${HOME}/empty`);
    expect(await backend.stat('irods://tempZone/home/alice/tree')).toEqual({ type: 'DIRECTORY' });
    expect(await backend.stat('irods://tempZone/home/alice/tree/a.txt')).toEqual({ type: 'FILE', size: 5 });
    const listed = await backend.list('irods://tempZone/home/alice/tree/');
    expect(listed.map((o) => o.relativePath)).toEqual([...names].sort());
    expect(listed.find((o) => o.relativePath === 'sub/one.txt')).toEqual({ url: 'irods://tempZone/home/alice/tree/sub/one.txt', relativePath: 'sub/one.txt', size: 11 });
    expect(double.requests('query:execute_genquery')).toBeGreaterThan(3);
    expect(await backend.list('irods://tempZone/home/alice/empty')).toEqual([]);
    await expect(backend.list('irods://tempZone/home/alice/nothing')).rejects.toThrow(/nothing: no such data object or collection/);
  });

  it('refuses wrong credentials and a refused access token clearly, without the secret', async () => {
    await start({}, { credentials: ['tempZone=alice:WRONG-pass-123'] });
    double.seed(`${HOME}/s.txt`, Buffer.from('s'));
    const err = (await backend.download('irods://tempZone/home/alice/s.txt', path.join(local, 's')).catch((e: unknown) => e)) as DomainError;
    expect(err.code).toBe(ErrorCode.StorageDenied);
    expect(err.message).toBe('irods://tempZone/home/alice/s.txt: iRODS zone "tempZone" refused the credentials of user "alice" (HTTP 401); check storage.irods.credentials');
    expect(err.message).not.toContain('WRONG-pass-123');
    backend = new IrodsStorageBackend(settingsFor(double, { credentials: [], access_tokens: ['tempZone=not-a-valid-oidc-token'] }), { partBytes: 1 << 20, parallel: 2 });
    opened.unshift(backend);
    const denied = (await backend.stat('irods://tempZone/home/alice/s.txt').catch((e: unknown) => e)) as DomainError;
    expect(denied.code).toBe(ErrorCode.StorageDenied);
    expect(denied.message).toMatch(/iRODS refused the token \(HTTP 401\)/);
    expect(denied.message).not.toContain('not-a-valid-oidc-token');
  });

  it('passes an OpenID Connect access token through without logging in', async () => {
    await start({ accessTokens: { 'oidc-token-bob': 'bob' } }, { credentials: [], access_tokens: ['tempZone=oidc-token-bob'] });
    await backend.upload(file('o.txt', Buffer.from('by bob')), 'irods://tempZone/home/bob/o.txt');
    expect(double.object('/tempZone/home/bob/o.txt')!.toString()).toBe('by bob');
    expect(double.requests('authenticate:')).toBe(0);
  });

  it('reports missing permission as denied', async () => {
    await start({ users: { alice: 'apass', carol: 'cpass' } });
    double.seed('/tempZone/home/carol/private.txt', Buffer.from('p'), 'carol');
    const err = (await backend.upload(file('p.txt', Buffer.from('x')), 'irods://tempZone/home/carol/private.txt').catch((e: unknown) => e)) as DomainError;
    expect(err.code).toBe(ErrorCode.StorageDenied);
    expect(err.message).toMatch(/permission denied \(HTTP 200, iRODS -818000 CAT_NO_ACCESS_PERMISSION\)/);
    await expect(backend.download('irods://tempZone/home/carol/private.txt', path.join(local, 'p'))).rejects.toThrow(/no such data object or collection, or no permission/);
  });

  it('rejects URLs it cannot serve when the task is created', async () => {
    await start();
    expect(await backend.problemWith('irods://tempZone/home/alice/a+b.txt')).toMatch(/paths with "\+" cannot be read through the iRODS HTTP API/);
    expect(await backend.problemWith('irods://otherZone/home/x')).toBe('irods://otherZone/home/x: iRODS zone "otherZone" is not configured (storage.irods.zones: tempZone)');
    expect(await backend.problemWith('irods://tempZone')).toMatch(/is not an irods:\/\/<zone>\/<path> URL/);
    expect(await backend.problemWith('irods://tempZone/home/alice/fine.txt')).toBeUndefined();
    expect(backend.locations()).toEqual(['irods://tempZone']);
  });

  it('refuses malformed settings entries at start-up, naming the key and not the secret', () => {
    const base = { zones: [], credentials: [], access_tokens: [], write_streams: 3, chunk_size_mb: 8, verify_checksums: true, idle_timeout_ms: 1000, retries: 1, retry_base_ms: 1, retry_max_ms: 1 };
    const reads = { partBytes: 1 << 20, parallel: 1 };
    expect(() => new IrodsStorageBackend({ ...base, zones: ['tempZone=http://127.0.0.1:1/irods'] }, reads)).toThrow(/storage\.irods\.zones: "tempZone=http:\/\/127\.0\.0\.1:1\/irods" is not zone=http\(s\):\/\/host:port\/irods-http-api\/<version>/);
    expect(() => new IrodsStorageBackend({ ...base, credentials: ['tempZone=s3cret-only'] }, reads)).toThrow(/^storage\.irods\.credentials: the entry for "tempZone" is not zone=user:password$/);
    expect(() => new IrodsStorageBackend({ ...base, credentials: ['alice:s3cret'] }, reads)).toThrow(/^storage\.irods\.credentials\[0\] is not zone=value$/);
    expect(() => new IrodsStorageBackend({ ...base, zones: ['tempZone=http://u:zone-s3cret@127.0.0.1:1/irods'] }, reads)).toThrow(/^(?!.*zone-s3cret)/);
  });
});

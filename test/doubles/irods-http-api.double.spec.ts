// Pins the double to the iRODS HTTP API's documented behaviour (the wire facts the iRODS backend relies on), with
// raw requests as curl would send them, so the backend's tests mean something.
import { request as rawRequest } from 'node:http';
import { request } from 'undici';
import { IrodsHttpApiDouble } from './irods-http-api.double';

interface Raw {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

function call(double: IrodsHttpApiDouble, method: string, path: string, headers: Record<string, string> = {}, body?: string | Buffer): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = rawRequest({ host: '127.0.0.1', port: double.port, method, path: `/irods-http-api/${double.version}${path}`, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('latin1') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const form = { 'content-type': 'application/x-www-form-urlencoded' };

describe('iRODS HTTP API double', () => {
  let double: IrodsHttpApiDouble;
  let auth: Record<string, string>;

  beforeEach(async () => {
    double = await new IrodsHttpApiDouble({ maxBodyBytes: 64 * 1024, readBufferBytes: 16 }).start();
    const token = await call(double, 'POST', '/authenticate', { authorization: `Basic ${Buffer.from('alice:apass').toString('base64')}` });
    auth = { authorization: `Bearer ${token.text}` };
  });

  afterEach(() => double.close());

  it('serves only its own version, with its Server header, and /info without authentication', async () => {
    const info = await call(double, 'GET', '/info');
    expect(info.headers.server).toMatch(/^irods_http_api\/0\.7\.0 /);
    expect(JSON.parse(info.text)).toMatchObject({ api_version: '0.7.0', max_size_of_request_body_in_bytes: 64 * 1024, max_number_of_streams_per_parallel_write_handle: 3 });
    const other = await new Promise<number>((resolve) => rawRequest({ host: '127.0.0.1', port: double.port, path: '/irods-http-api/0.6.0/info' }, (res) => resolve(res.statusCode ?? 0)).end());
    expect(other).toBe(404);
    expect((await call(double, 'GET', '/data-objects', auth)).status).toBe(400); // no op
    expect((await call(double, 'PUT', '/data-objects', auth)).status).toBe(405);
    expect((await call(double, 'POST', '/data-objects', { ...auth, 'content-type': 'text/plain' }, 'op=touch')).status).toBe(400);
  });

  it('authenticates like the server: 400 without Basic, 401 for bad credentials, 400 without a bearer, 401 for an unknown token', async () => {
    expect((await call(double, 'POST', '/authenticate')).status).toBe(400);
    expect((await call(double, 'POST', '/authenticate', { authorization: 'Bearer x' })).status).toBe(400);
    expect((await call(double, 'POST', '/authenticate', { authorization: `Basic ${Buffer.from('alice:nope').toString('base64')}` })).status).toBe(401);
    expect((await call(double, 'POST', '/authenticate', { authorization: `Basic ${Buffer.from('anonymous:').toString('base64')}` })).status).toBe(200);
    expect((await call(double, 'GET', '/data-objects?op=stat&lpath=/x')).status).toBe(400);
    expect((await call(double, 'GET', '/data-objects?op=stat&lpath=/x', { authorization: 'Bearer unknown' })).status).toBe(401);
  });

  it('reports iRODS failures as HTTP 200 with a negative status_code, and a missing read as 404', async () => {
    const stat = await call(double, 'GET', '/data-objects?op=stat&lpath=/tempZone/home/alice/none', auth);
    expect(stat.status).toBe(200);
    expect(JSON.parse(stat.text)).toEqual({ irods_response: { status_code: -171000 } });
    expect((await call(double, 'GET', '/data-objects?op=read&lpath=/tempZone/home/alice/none', auth)).status).toBe(404);
    const list = await call(double, 'GET', '/collections?op=list&lpath=/tempZone/home/alice/none', auth);
    expect(list.status).toBe(400);
    expect(JSON.parse(list.text).irods_response.status_code).toBe(-170000);
  });

  it('decodes a + in a query string or urlencoded body as a space, but keeps it raw in multipart and headers', async () => {
    double.seed('/tempZone/home/alice/a b', Buffer.from('space'));
    const viaPlus = await call(double, 'GET', '/data-objects?op=stat&lpath=/tempZone/home/alice/a%2Bb', auth);
    expect(JSON.parse(viaPlus.text)).toMatchObject({ irods_response: { status_code: 0 }, size: 5 }); // found "a b", not "a+b"
    const boundary = 'XyZ';
    const multipart = `--${boundary}\r\nContent-Disposition: form-data; name="op"\r\n\r\ntouch\r\n--${boundary}\r\nContent-Disposition: form-data; name="lpath"\r\n\r\n/tempZone/home/alice/c+d\r\n--${boundary}--\r\n`;
    expect((await call(double, 'POST', '/data-objects', { ...auth, 'content-type': `multipart/form-data; boundary=${boundary}` }, multipart)).status).toBe(200);
    expect(double.object('/tempZone/home/alice/c+d')).toEqual(Buffer.alloc(0));
    // undici (what the backend uses) sends a latin1 header value as those bytes: the UTF-8 of the path.
    const header = await request(`${double.baseUrl}/data-objects`, {
      method: 'POST',
      headers: { ...auth, 'irods-api-request-op': 'write', 'irods-api-request-lpath': Buffer.from('/tempZone/home/alice/é+f', 'utf8').toString('latin1') },
      body: 'raw',
    });
    expect(header.statusCode).toBe(200);
    await header.body.dump();
    expect(double.object('/tempZone/home/alice/é+f')!.toString()).toBe('raw');
  });

  it('hangs up without an answer when a body is over the limit', async () => {
    await expect(call(double, 'POST', '/data-objects', { ...auth, ...form }, `op=write&lpath=/tempZone/home/alice/big&bytes=${'x'.repeat(70 * 1024)}`)).rejects.toThrow(/socket hang up|ECONNRESET/);
  });

  it('truncates on every non-parallel write unless truncate=0, and sends small reads labelled JSON', async () => {
    const write = (extra: string, bytes: string) => call(double, 'POST', '/data-objects', { ...auth, ...form }, `op=write&lpath=/tempZone/home/alice/seq&bytes=${bytes}${extra}`);
    await write('', 'aaaa');
    await write('&offset=4&truncate=0', 'bbbb');
    expect(double.object('/tempZone/home/alice/seq')!.toString()).toBe('aaaabbbb');
    await write('&offset=4', 'cccc');
    expect(double.object('/tempZone/home/alice/seq')!.toString()).toBe('\0\0\0\0cccc');
    expect(double.truncatingWrites).toEqual(['/tempZone/home/alice/seq@4']);
    const read = await call(double, 'GET', '/data-objects?op=read&lpath=/tempZone/home/alice/seq&offset=4&count=2', auth);
    expect(read.headers['content-type']).toBe('application/json');
    expect(read.text).toBe('cc');
  });

  it('keeps a parallel write invisible until shutdown, enforces stream limits, and forgets the handle', async () => {
    const post = (body: string) => call(double, 'POST', '/data-objects', { ...auth, ...form }, body);
    double.seed('/tempZone/home/alice/p', Buffer.from('old'));
    expect((await post('op=parallel_write_init&lpath=/tempZone/home/alice/p&stream-count=4')).status).toBe(400); // over the per-handle cap
    const init = JSON.parse((await post('op=parallel_write_init&lpath=/tempZone/home/alice/p&stream-count=2')).text);
    const handle = init.parallel_write_handle as string;
    expect(JSON.parse((await post('op=parallel_write_init&lpath=/tempZone/home/alice/p&stream-count=1')).text).irods_response.status_code).toBe(-1803000);
    expect((await post(`op=write&parallel-write-handle=${handle}&stream-index=2&offset=0&bytes=x`)).status).toBe(400);
    expect((await post(`op=write&parallel-write-handle=${handle}&stream-index=1&offset=3&bytes=def`)).status).toBe(200);
    expect((await post(`op=write&parallel-write-handle=${handle}&stream-index=0&offset=0&bytes=abc`)).status).toBe(200);
    expect(double.object('/tempZone/home/alice/p')!.toString()).toBe('old');
    expect(double.openHandles()).toEqual([handle]);
    expect((await post(`op=parallel_write_shutdown&parallel-write-handle=${handle}`)).status).toBe(200);
    expect(double.object('/tempZone/home/alice/p')!.toString()).toBe('abcdef');
    expect(double.openHandles()).toEqual([]);
    expect(JSON.parse((await post(`op=parallel_write_shutdown&parallel-write-handle=${handle}`)).text)).toEqual({ irods_response: { status_code: 0 } });
  });

  it('answers 503 past the global stream cap (0.7.0)', async () => {
    const capped = await new IrodsHttpApiDouble({ globalStreams: 4 }).start();
    try {
      const token = (await call(capped, 'POST', '/authenticate', { authorization: `Basic ${Buffer.from('alice:apass').toString('base64')}` })).text;
      const post = (body: string) => call(capped, 'POST', '/data-objects', { authorization: `Bearer ${token}`, ...form }, body);
      expect((await post('op=parallel_write_init&lpath=/tempZone/home/alice/one&stream-count=3')).status).toBe(200);
      expect((await post('op=parallel_write_init&lpath=/tempZone/home/alice/two&stream-count=3')).status).toBe(503);
    } finally {
      await capped.close();
    }
  });

  it('lists a collection as full paths, null when empty, and requires catalog-only to remove an object', async () => {
    double.mkdirs('/tempZone/home/alice/empty');
    double.seed('/tempZone/home/alice/full/x', Buffer.from('x'));
    expect(JSON.parse((await call(double, 'GET', '/collections?op=list&lpath=/tempZone/home/alice/empty', auth)).text).entries).toBeNull();
    expect(JSON.parse((await call(double, 'GET', '/collections?op=list&lpath=/tempZone/home/alice/full', auth)).text).entries).toEqual(['/tempZone/home/alice/full/x']);
    expect((await call(double, 'POST', '/data-objects', { ...auth, ...form }, 'op=remove&lpath=/tempZone/home/alice/full/x')).status).toBe(400);
    expect((await call(double, 'POST', '/data-objects', { ...auth, ...form }, 'op=remove&lpath=/tempZone/home/alice/full/x&catalog-only=0&no-trash=1')).status).toBe(200);
  });

  it('calculates checksums as sha2:<base64 SHA-256>', async () => {
    double.seed('/tempZone/home/alice/sum', Buffer.from('hello'));
    const answer = JSON.parse((await call(double, 'POST', '/data-objects', { ...auth, ...form }, 'op=calculate_checksum&lpath=/tempZone/home/alice/sum')).text);
    expect(answer.checksum).toBe('sha2:LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=');
    expect(JSON.parse((await call(double, 'POST', '/data-objects', { ...auth, ...form }, 'op=calculate_checksum&lpath=/tempZone/home/alice/none')).text).irods_response.status_code).toBe(-808000);
  });
});

// The floods of issue 12 against the built service as a child process (real SQLite, nothing runs): many tag
// filters, a compression bomb, and connections that hold a partial request head. Each ends with the server still
// answering an ordinary request.
import { connect, Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import { ServiceProcess } from './service-process';

const QUIET = { TESP_COMPUTE__LOCAL__MAX_CONCURRENT_TASKS: '0' };
const TASK = { executors: [{ image: 'alpine', command: ['true'] }] };

/** Opens `count` sockets that each send the start of a request head and then nothing. */
async function partialHeads(port: number, count: number): Promise<{ sockets: Socket[]; closed: () => number; replies: () => string[] }> {
  const sockets: Socket[] = [];
  const replies: string[] = [];
  let closed = 0;
  for (let i = 0; i < count; i++) {
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.on('close', () => closed++);
    let reply = '';
    socket.on('data', (d: Buffer) => (reply += d.toString()));
    socket.on('end', () => reply && replies.push(reply));
    socket.write('GET /ga4gh/tes/v1/service-info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ');
    sockets.push(socket);
    // Connected before the next batch: the flood is held, not just queued in the backlog.
    if (i % 100 === 99) await Promise.all(sockets.slice(-100).map((s) => (s.connecting ? new Promise((r) => s.once('connect', r).once('close', r)) : undefined)));
  }
  return { sockets, closed: () => closed, replies: () => replies };
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('hostile floods against the default server', () => {
  const service = new ServiceProcess(ServiceProcess.tempDataDir(), QUIET);

  beforeAll(() => service.start());
  afterAll(async () => {
    await service.stop();
    service.cleanup();
  });

  it('answers ~50 and ~1000 tag_key parameters with 400 naming limits.list_tag_filters, and still lists', async () => {
    for (const count of [50, 1000]) {
      const query = Array.from({ length: count }, (_, i) => `tag_key=k${i % 10}`).join('&');
      const reply = await service.get(`/tasks?${query}`);
      expect([count, reply.status, reply.json]).toEqual([count, 400, { msg: `tag_key: ${count} parameters, more than limits.list_tag_filters (32)`, status_code: 400 }]);
    }
    expect((await service.get('/tasks?tag_key=a&tag_key=b&tag_value=1')).status).toBe(200);
  });

  it('refuses a gzip body that inflates to 64 MiB with 415, storing nothing, and goes on answering', async () => {
    const bomb = gzipSync(Buffer.from(JSON.stringify({ ...TASK, description: 'x'.repeat(64 * 1024 * 1024) })), { level: 9 });
    expect(bomb.length).toBeLessThan(100 * 1024);
    for (const encoding of ['gzip', 'deflate', 'br', 'GZIP, identity']) {
      const res = await fetch(`${service.base}/tasks`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': encoding }, body: bomb, signal: AbortSignal.timeout(10_000) });
      expect([encoding, res.status, await res.json()]).toEqual([encoding, 415, { msg: expect.stringMatching(/^Content-Encoding ".+" is not accepted: send the request body uncompressed$/), status_code: 415 }]);
    }
    expect((await service.get('/tasks')).json.tasks).toEqual([]);
    // A request without a body has nothing to inflate; identity is no encoding.
    expect((await fetch(`${service.base}/tasks`, { headers: { 'content-encoding': 'gzip' } })).status).toBe(200);
    const plain = await fetch(`${service.base}/tasks`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': 'identity' }, body: JSON.stringify(TASK) });
    expect(plain.status).toBe(200);
  });

  it('closes the connection after refusing a compressed body beyond server.body_limit_mb, so a next request does not queue behind its unread rest', async () => {
    // Raw bytes on one connection: the 17 MiB body (beyond the 16 MiB limit), then a second request right behind it.
    const before = (await service.get('/tasks')).json.tasks.length;
    const bytes = 17 * 1024 * 1024;
    const socket = connect(service.port, '127.0.0.1');
    socket.on('error', () => undefined); // the server may reset the connection under the rest of the body
    let reply = '';
    socket.on('data', (d: Buffer) => (reply += d.toString('latin1')));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write(`POST /ga4gh/tes/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: ${bytes}\r\n\r\n`);
    socket.write(Buffer.alloc(bytes, 0x78), () => socket.write('GET /ga4gh/tes/v1/service-info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'));
    await closed;
    const [head, body] = reply.split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 415 /);
    expect(head.toLowerCase()).toContain('\r\nconnection: close');
    expect(JSON.parse(body)).toEqual({ msg: 'Content-Encoding "gzip" is not accepted: send the request body uncompressed', status_code: 415 });
    // One answer: the unread rest of the body was never taken for a request.
    expect(reply.match(/HTTP\/1\.1 /g)).toHaveLength(1);
    expect((await service.get('/service-info')).status).toBe(200);
    expect((await service.get('/tasks')).json.tasks).toHaveLength(before);
  });

  it('answers what is refused before any route runs in the one error shape: an oversized head, a path that does not decode', async () => {
    const oversized = await fetch(`${service.base}/service-info`, { headers: { 'x-big': 'v'.repeat(20_000) } });
    expect([oversized.status, await oversized.json()]).toEqual([431, { msg: 'request head (URL and headers) is larger than 16384 bytes', status_code: 431 }]);
    const badPath = await fetch(`${service.base}/tasks/%ff`);
    expect([badPath.status, await badPath.json()]).toEqual([400, { msg: 'request path is not valid: a percent-encoded part of it is not UTF-8', status_code: 400 }]);
    const notUtf8 = await fetch(`${service.base}/tasks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: Buffer.from([0x7b, 0xff, 0x7d]) });
    expect([notUtf8.status, await notUtf8.json()]).toEqual([400, { msg: 'request body is not valid UTF-8 (JSON text must be UTF-8)', status_code: 400 }]);
  });

  it('refuses bodies whose structure is costly to parse (deep nesting, 900 000 members) before parsing them', async () => {
    const before = (await service.get('/tasks')).json.tasks.length;
    const post = async (body: string) => {
      const res = await fetch(`${service.base}/tasks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal: AbortSignal.timeout(10_000) });
      return [res.status, await res.json()];
    };
    expect(await post('['.repeat(7 * 1024 * 1024) + ']'.repeat(7 * 1024 * 1024))).toEqual([400, { msg: 'request body: JSON nested deeper than limits.json_depth (64)', status_code: 400 }]);
    const members = Array.from({ length: 900_000 }, (_, i) => `"K${i}":"v"`).join(',');
    expect(await post(`{"executors":[{"image":"a","command":["x"],"env":{${members}}}]}`)).toEqual([400, { msg: 'request body: more JSON values than limits.json_values (100000)', status_code: 400 }]);
    expect((await service.get('/tasks')).json.tasks).toHaveLength(before);
  });

  it('keeps prototype keys as plain data: nothing is polluted, a "__proto__" tag is a tag', async () => {
    const raw = '{"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}},"executors":[{"image":"alpine","command":["true"],"env":{"__proto__":"e"}}],"tags":{"__proto__":"p","constructor":"c"}}';
    const res = await fetch(`${service.base}/tasks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: raw });
    expect(res.status).toBe(200);
    const { id } = (await res.json()) as { id: string };
    const text = await (await fetch(`${service.base}/tasks/${id}?view=FULL`)).text();
    expect(text).not.toContain('polluted');
    const task = JSON.parse(text);
    expect(Object.entries(task.tags)).toEqual([['__proto__', 'p'], ['constructor', 'c']]);
    expect(Object.entries(task.executors[0].env)).toEqual([['__proto__', 'e']]);
    const plain = await service.post('/tasks', TASK);
    expect(JSON.stringify((await service.get(`/tasks/${plain.json.id}?view=FULL`)).json)).not.toContain('polluted');
  });

  it('answers an ordinary request while 2 100 connections hold a partial request head', async () => {
    const flood = await partialHeads(service.port, 2100);
    try {
      expect(flood.closed()).toBe(0);
      const res = await fetch(`${service.base}/service-info`, { signal: AbortSignal.timeout(10_000) });
      expect(res.status).toBe(200);
      expect((await service.get('/tasks')).status).toBe(200);
    } finally {
      flood.sockets.forEach((s) => s.destroy());
    }
  });
});

describe('connection limit and header timeout from settings', () => {
  const service = new ServiceProcess(ServiceProcess.tempDataDir(), {
    ...QUIET,
    TESP_SERVER__MAX_CONNECTIONS: '64',
    TESP_SERVER__HEADERS_TIMEOUT_MS: '1000',
  });

  beforeAll(() => service.start());
  afterAll(async () => {
    await service.stop();
    service.cleanup();
  });

  it('closes connections beyond server.max_connections, times out partial heads with a 408 in the error shape, logs the limit once, and serves again', async () => {
    const flood = await partialHeads(service.port, 300);
    try {
      // Every one is closed by the server: at once beyond the limit, after the header timeout within it.
      await until('the server closes every partial head', async () => (flood.closed() === 300 ? true : undefined));
      const timedOut = flood.replies().filter((r) => r.startsWith('HTTP/1.1 408'));
      expect(timedOut.length).toBeGreaterThan(0);
      expect(JSON.parse(timedOut[0].slice(timedOut[0].indexOf('\r\n\r\n') + 4))).toEqual({
        msg: 'request not received in time (server.headers_timeout_ms: 1000 for the head, server.request_timeout_ms: 600000 for all of it)',
        status_code: 408,
      });
      const res = await until('an ordinary request is answered', async () => {
        const r = await fetch(`${service.base}/service-info`, { signal: AbortSignal.timeout(5000) });
        return r.status === 200 ? r : undefined;
      });
      expect(res.status).toBe(200);
      const warnings = service.output.split('\n').filter((line) => line.includes('connection limit reached'));
      // 236 connections were closed at once; one warning says so (rate-limited, not one line per connection).
      expect(warnings).toHaveLength(1);
      expect(JSON.parse(warnings[0])).toMatchObject({ level: 40, msg: expect.stringMatching(/^connection limit reached: server\.max_connections \(64\) connections are open/) });
    } finally {
      flood.sockets.forEach((s) => s.destroy());
    }
  });
});

describe('JSON bodies in flight', () => {
  const service = new ServiceProcess(ServiceProcess.tempDataDir(), { ...QUIET, TESP_SERVER__BODY_LIMIT_MB: '16', TESP_SERVER__JSON_IN_FLIGHT_MB: '32' });

  beforeAll(() => service.start());
  afterAll(async () => {
    await service.stop();
    service.cleanup();
  });

  /** A POST of a 15 MiB JSON body of which only the first MiB is sent; resolves with whatever the server answers. */
  function slowBody(): { socket: Socket; reply: Promise<string> } {
    const socket = connect(service.port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.write(`POST /ga4gh/tes/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${15 * 1024 * 1024}\r\n\r\n`);
    socket.write('{"description":"' + 'x'.repeat(1024 * 1024));
    let reply = '';
    return { socket, reply: new Promise((resolve) => socket.on('data', (d: Buffer) => resolve((reply += d.toString())))) };
  }

  it('answers 503 with Retry-After naming server.json_in_flight_mb while the bodies being read fill it, and takes bodies again once they end', async () => {
    const first = slowBody();
    const second = slowBody();
    try {
      // Both are being read once a third is refused; the refusal comes before its body is read.
      const third = await until('a third body is refused', async () => {
        const probe = slowBody();
        const reply = await Promise.race([probe.reply, new Promise<string>((resolve) => setTimeout(() => resolve(''), 2000).unref())]);
        probe.socket.destroy();
        return reply.startsWith('HTTP/1.1 503') ? reply : undefined;
      });
      expect(third).toMatch(/\r\nretry-after: 1\r\n/i);
      expect(JSON.parse(third.slice(third.indexOf('\r\n\r\n') + 4))).toEqual({
        msg: 'too many JSON request bodies are being read at once (server.json_in_flight_mb: 32 MiB in all); retry shortly',
        status_code: 503,
      });
    } finally {
      first.socket.destroy();
      second.socket.destroy();
    }
    const created = await until('a create is taken again', async () => {
      const reply = await service.post('/tasks', TASK);
      return reply.status === 200 ? reply : undefined;
    });
    expect(created.json.id).toEqual(expect.any(String));
    expect(service.output).not.toMatch(/"level":50/);
  });
});

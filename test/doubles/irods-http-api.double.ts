// A test double of the iRODS HTTP API (irods/irods_client_http_api), because no iRODS server can run here.
// It follows the protocol as the server's source at 0.7.0 (and 0.5.0 on request) behaves, including its quirks:
// the versioned base path, `+` decoded to a space in query strings and urlencoded bodies, HTTP 200 answers that
// carry an iRODS error code, a request body over the limit closing the connection without an answer, 429/503
// stream caps, parallel-write sizes that become visible only at shutdown, and `entries: null` for an empty
// collection. Tests drive its fault knobs and read its counters (requests per op, open handles, streams used
// concurrently).
import { createHash, randomUUID } from 'node:crypto';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export type IrodsApiVersion = '0.7.0' | '0.5.0';

export interface IrodsDoubleOptions {
  version?: IrodsApiVersion;
  zone?: string;
  /** user → password; each user gets /<zone>/home/<user>. */
  users?: Record<string, string>;
  /** OpenID Connect mode: access token → user. */
  accessTokens?: Record<string, string>;
  tokenLifetimeMs?: number;
  maxBodyBytes?: number;
  streamsPerHandle?: number;
  /** 0.7.0's global cap on open parallel-write streams (503 beyond it). */
  globalStreams?: number;
  /** Reads up to this many bytes answer at once (with the server's odd JSON content type); larger ones are chunked. */
  readBufferBytes?: number;
  requestTimeoutMs?: number;
  checksum?: 'sha256' | 'md5';
  maxRows?: number;
  /** Delay before answering a write, so a stream used twice at once overlaps visibly. */
  writeDelayMs?: number;
}

interface DataObject {
  kind: 'data';
  bytes: Buffer;
  size: number;
  modifiedAt: number;
  checksum: string;
  acl: Map<string, string>;
  /** Handle of the parallel write that has it open. */
  openBy?: string;
}

interface Collection {
  kind: 'coll';
  modifiedAt: number;
  acl: Map<string, string>;
}

type Entry = DataObject | Collection;

interface ParallelWrite {
  path: string;
  user: string;
  streams: number;
  busy: boolean[];
  /** What the object held at init (empty when truncated). */
  base: Buffer;
  /** Chunks by offset, assembled at shutdown (each byte is copied once, as a server writing a file would). */
  chunks: Map<number, Buffer>;
}

interface ReadFault {
  /** Bytes sent before the read misbehaves. */
  after: number;
  mode: 'truncate' | 'stall';
}

/** Knobs a test sets to make the next matching requests fail. Counts are decremented as they fire. */
export interface IrodsFaults {
  /** Fail this many upcoming writes with a plain 500 (a retry on the same stream may succeed). */
  failWrites: number;
  /** Fail the next write with 500 "stream bad": the client must restart the whole transfer. */
  breakStreamOnWrite: number;
  /** Drop the connection without an answer for this many upcoming requests whose op matches. */
  drop: { op: string; times: number } | undefined;
  /** Answer 503 to this many upcoming parallel_write_init requests. */
  rejectInits: number;
  /** Misbehave on this many upcoming large (chunked) reads. */
  reads: (ReadFault & { times: number }) | undefined;
  /** Flip a byte in the data of this many upcoming writes (a corrupted upload). */
  corruptWrites: number;
  /** Every token lapses after this many more authenticated requests (expiry in the middle of a transfer). */
  expireTokensAfter: number | undefined;
  /** Delay every answer by this many ms. */
  slowMs: number;
}

const perms = ['null', 'read_metadata', 'read_object', 'create_metadata', 'modify_metadata', 'delete_metadata', 'create_object', 'modify_object', 'delete_object', 'own'];
const level = (perm: string | undefined) => perms.indexOf(perm ?? 'null');
const now = () => Math.floor(Date.now() / 1000);
const ok = (extra: Record<string, unknown> = {}) => ({ irods_response: { status_code: 0 }, ...extra });
const fail = (code: number, message?: string) => ({ irods_response: { status_code: code, ...(message ? { status_message: message } : {}) } });

const CODES = {
  SYS_INVALID_INPUT_PARAM: -130000,
  NOT_A_COLLECTION: -170000,
  NOT_A_DATA_OBJECT: -171000,
  INVALID_HANDLE: -175000,
  OBJ_PATH_DOES_NOT_EXIST: -358000,
  CHECK_VERIFICATION_RESULTS: -407000,
  CAT_NO_ROWS_FOUND: -808000,
  CAT_NO_ACCESS_PERMISSION: -818000,
  CAT_COLLECTION_NOT_EMPTY: -821000,
  HIERARCHY_ERROR: -1803000,
} as const;

class HttpAnswer {
  constructor(
    readonly status: number,
    readonly body?: unknown,
  ) {}
}

export class IrodsHttpApiDouble {
  readonly version: IrodsApiVersion;
  readonly zone: string;
  readonly faults: IrodsFaults = { failWrites: 0, breakStreamOnWrite: 0, drop: undefined, rejectInits: 0, reads: undefined, corruptWrites: 0, expireTokensAfter: undefined, slowMs: 0 };
  /** Streams written by two requests at once: the real server would race, so tests assert this stays empty. */
  readonly concurrentStreamUse: string[] = [];
  /** Chunked writes without a parallel handle that truncated an object after its first chunk. */
  readonly truncatingWrites: string[] = [];
  /** Chunks (handle@offset) that a parallel write stored twice. */
  readonly rewrittenChunks: string[] = [];
  private readonly opts: Required<Omit<IrodsDoubleOptions, 'version' | 'zone'>>;
  private readonly entries = new Map<string, Entry>();
  private readonly tokens = new Map<string, { user: string; expires: number }>();
  private readonly handles = new Map<string, ParallelWrite>();
  private readonly tickets = new Map<string, { path: string; user: string; type: string }>();
  private readonly counts = new Map<string, number>();
  private readonly sockets = new Set<Socket>();
  private server?: Server;
  private activeStreams = 0;
  private largestBody = 0;
  port = 0;

  constructor(options: IrodsDoubleOptions = {}) {
    this.version = options.version ?? '0.7.0';
    this.zone = options.zone ?? 'tempZone';
    this.opts = {
      users: options.users ?? { alice: 'apass' },
      accessTokens: options.accessTokens ?? {},
      tokenLifetimeMs: options.tokenLifetimeMs ?? 3_600_000,
      maxBodyBytes: options.maxBodyBytes ?? 8 * 1024 * 1024,
      streamsPerHandle: options.streamsPerHandle ?? 3,
      globalStreams: options.globalStreams ?? 15,
      readBufferBytes: options.readBufferBytes ?? (this.version === '0.7.0' ? 1024 * 1024 : 8192),
      requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
      checksum: options.checksum ?? 'sha256',
      maxRows: options.maxRows ?? 15,
      writeDelayMs: options.writeDelayMs ?? 0,
    };
    const t = now();
    for (const dir of ['', `/${this.zone}`, `/${this.zone}/home`]) this.entries.set(dir || '/', { kind: 'coll', modifiedAt: t, acl: new Map() });
    for (const user of [...Object.keys(this.opts.users), ...Object.values(this.opts.accessTokens)]) {
      this.entries.set(`/${this.zone}/home/${user}`, { kind: 'coll', modifiedAt: t, acl: new Map([[user, 'own']]) });
    }
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}/irods-http-api/${this.version}`;
  }

  async start(port = 0): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res));
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  // ---- test hooks ----

  /** Puts a data object (and its parent collections) owned by `owner`. */
  seed(path: string, data: Buffer, owner = Object.keys(this.opts.users)[0]): void {
    this.mkdirs(parentOf(path), owner);
    this.entries.set(path, { kind: 'data', bytes: Buffer.from(data), size: data.length, modifiedAt: now(), checksum: '', acl: new Map([[owner, 'own']]) });
  }

  mkdirs(path: string, owner = Object.keys(this.opts.users)[0]): void {
    const parts = path.split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const p = '/' + parts.slice(0, i).join('/');
      if (!this.entries.has(p)) this.entries.set(p, { kind: 'coll', modifiedAt: now(), acl: new Map([[owner, 'own']]) });
    }
  }

  /** The bytes of a data object as a reader would see them, or undefined. */
  object(path: string): Buffer | undefined {
    const entry = this.entries.get(path);
    return entry?.kind === 'data' ? entry.bytes.subarray(0, entry.size) : undefined;
  }

  isCollection(path: string): boolean {
    return this.entries.get(path)?.kind === 'coll';
  }

  grant(path: string, user: string, perm: string): void {
    this.entries.get(path)?.acl.set(user, perm);
  }

  /** Flips one byte of a stored object without touching its recorded checksum. */
  corrupt(path: string): void {
    const entry = this.entries.get(path);
    if (entry?.kind === 'data' && entry.size > 0) entry.bytes[entry.size >> 1] ^= 0xff;
  }

  /** Every token stops working, as after a restart of the HTTP API or the end of their lifetime. */
  expireTokens(): void {
    this.tokens.clear();
  }

  openHandles(): string[] {
    return [...this.handles.keys()];
  }

  /** Requests seen per `<endpoint>:<op>` (e.g. "data-objects:write", "authenticate:"). */
  requests(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  /** The largest request body that reached the server. */
  largestRequestBody(): number {
    return this.largestBody;
  }

  // ---- transport ----

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const deadline = setTimeout(() => req.socket.destroy(), this.opts.requestTimeoutMs);
    res.on('close', () => clearTimeout(deadline));
    res.setHeader('Server', `irods_http_api/${this.version} (double)`);
    const url = new URL(req.url ?? '/', 'http://double');
    const prefix = `/irods-http-api/${this.version}/`;
    if (!url.pathname.startsWith(prefix)) return this.send(res, new HttpAnswer(404));
    const endpoint = url.pathname.slice(prefix.length);
    if (!['authenticate', 'collections', 'data-objects', 'info', 'query', 'tickets'].includes(endpoint)) return this.send(res, new HttpAnswer(404));

    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > this.opts.maxBodyBytes) {
      // The real server logs "Request constraint error" and hangs up without answering.
      req.socket.destroy();
      return;
    }
    const headerWrite = req.method === 'POST' && endpoint === 'data-objects' && String(req.headers['irods-api-request-op'] ?? '') === 'write' && this.version !== '0.5.0';
    let streamKey: string | undefined;
    try {
      if (headerWrite) streamKey = this.claimStream(headerParam(req, 'parallel-write-handle'), headerParam(req, 'stream-index'));
      const body = await readBody(req, this.opts.maxBodyBytes);
      if (body === 'too-large') return this.send(res, new HttpAnswer(500));
      this.largestBody = Math.max(this.largestBody, body.length);
      let params: Map<string, string>;
      let bytes: Buffer | undefined;
      if (req.method === 'GET') params = decodeForm(url.search.slice(1));
      else if (req.method === 'POST' && headerWrite) {
        params = new Map([['op', 'write']]);
        for (const name of ['lpath', 'resource', 'replica-number', 'offset', 'truncate', 'append', 'parallel-write-handle', 'stream-index', 'ticket']) {
          const value = headerParam(req, name);
          if (value !== undefined) params.set(name, value);
        }
        bytes = body;
      } else if (req.method === 'POST') {
        const type = String(req.headers['content-type'] ?? '').toLowerCase();
        if (type.startsWith('application/x-www-form-urlencoded')) params = decodeForm(body.toString('latin1'));
        else if (type.startsWith('multipart/form-data')) {
          const parsed = decodeMultipart(body, String(req.headers['content-type']));
          if (!parsed) return this.send(res, new HttpAnswer(400));
          params = new Map([...parsed].map(([k, v]) => [k, v.toString('utf8')]));
          bytes = parsed.get('bytes');
        } else if (endpoint !== 'authenticate') return this.send(res, new HttpAnswer(400));
        else params = new Map();
        if (!bytes && params.has('bytes')) bytes = Buffer.from(params.get('bytes')!, 'latin1');
      } else return this.send(res, new HttpAnswer(405));

      const op = endpoint === 'authenticate' || endpoint === 'info' ? '' : params.get('op') ?? '';
      const key = `${endpoint}:${op}`;
      this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
      if (this.faults.drop && (this.faults.drop.op === key || this.faults.drop.op === '*') && this.faults.drop.times > 0) {
        this.faults.drop.times -= 1;
        req.socket.destroy();
        return;
      }
      if (!headerWrite && op === 'write' && params.has('parallel-write-handle')) {
        streamKey = this.claimStream(params.get('parallel-write-handle'), params.get('stream-index'));
      }
      if (this.faults.slowMs) await sleep(this.faults.slowMs);
      if (op === 'write' && this.opts.writeDelayMs) await sleep(this.opts.writeDelayMs);
      const answer = this.route(req, endpoint, op, params, bytes);
      if (answer instanceof ReadAnswer) return this.sendRead(res, answer);
      return this.send(res, answer);
    } catch (err) {
      if (err instanceof HttpAnswer) return this.send(res, err);
      return this.send(res, new HttpAnswer(500));
    } finally {
      if (streamKey) this.releaseStream(streamKey);
    }
  }

  private send(res: ServerResponse, answer: HttpAnswer): void {
    if (res.destroyed) return;
    if (typeof answer.body === 'string') {
      res.writeHead(answer.status, { 'Content-Type': 'text/plain' }).end(answer.body);
      return;
    }
    res.writeHead(answer.status, { 'Content-Type': 'application/json' });
    res.end(answer.body === undefined ? '' : JSON.stringify(answer.body));
  }

  private sendRead(res: ServerResponse, answer: ReadAnswer): void {
    const { data } = answer;
    if (data.length <= this.opts.readBufferBytes) {
      // Small reads go out at once, labelled JSON although they are raw bytes (as the real server does).
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': data.length }).end(data);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Transfer-Encoding': 'chunked' });
    const fault = this.faults.reads && this.faults.reads.times > 0 ? this.faults.reads : undefined;
    if (fault) fault.times -= 1;
    const limit = fault ? Math.min(fault.after, data.length) : data.length;
    let at = 0;
    const pump = () => {
      while (at < limit) {
        const piece = data.subarray(at, Math.min(limit, at + 256 * 1024));
        at += piece.length;
        if (!res.write(piece)) return void res.once('drain', pump);
      }
      if (!fault) res.end();
      // A mid-stream iRODS error ends a chunked read early or leaves it hanging.
      else if (fault.mode === 'truncate') res.end();
      // 'stall': nothing more is sent; the request deadline or the client's idle timeout ends it.
    };
    pump();
  }

  private claimStream(handle: string | undefined, index: string | undefined): string | undefined {
    if (handle === undefined || index === undefined) return undefined;
    const write = this.handles.get(handle);
    const i = Number(index);
    if (!write || !Number.isInteger(i) || i < 0 || i >= write.streams) return undefined;
    const key = `${handle}#${i}`;
    if (write.busy[i]) this.concurrentStreamUse.push(key);
    write.busy[i] = true;
    return key;
  }

  private releaseStream(key: string): void {
    const [handle, index] = key.split('#');
    const write = this.handles.get(handle);
    if (write) write.busy[Number(index)] = false;
  }

  // ---- operations ----

  private route(req: IncomingMessage, endpoint: string, op: string, params: Map<string, string>, bytes: Buffer | undefined): HttpAnswer | ReadAnswer {
    if (endpoint === 'info') {
      if (req.method !== 'GET') return new HttpAnswer(405);
      return new HttpAnswer(200, this.info(req));
    }
    if (endpoint === 'authenticate') {
      if (req.method !== 'POST') return new HttpAnswer(405);
      return this.authenticate(req);
    }
    const user = this.user(req, params);
    const get = req.method === 'GET';
    if (endpoint === 'data-objects') {
      const ops: Record<string, () => HttpAnswer | ReadAnswer> = get
        ? { stat: () => this.statObject(user, params), read: () => this.read(user, params), verify_checksum: () => this.checksum(user, params, true) }
        : {
            write: () => this.write(user, params, bytes),
            parallel_write_init: () => this.parallelInit(user, params),
            parallel_write_shutdown: () => this.parallelShutdown(params),
            touch: () => this.touch(user, params),
            remove: () => this.removeObject(user, params),
            calculate_checksum: () => this.checksum(user, params, false),
            replicate: () => (params.get('dst-resource') ? new HttpAnswer(200, ok()) : new HttpAnswer(400)),
            ...(this.version === '0.7.0' ? { truncate: () => this.truncate(user, params) } : {}),
          };
      return (ops[op] ?? (() => new HttpAnswer(400)))();
    }
    if (endpoint === 'collections') {
      const ops: Record<string, () => HttpAnswer> = get
        ? { stat: () => this.statCollection(user, params), list: () => this.list(user, params) }
        : { create: () => this.createCollection(user, params), remove: () => this.removeCollection(user, params) };
      return (ops[op] ?? (() => new HttpAnswer(400)))();
    }
    if (endpoint === 'query') {
      if (!get) return new HttpAnswer(405);
      return op === 'execute_genquery' ? this.genquery(user, params) : new HttpAnswer(400);
    }
    // tickets
    if (get) return new HttpAnswer(405);
    if (op === 'create') {
      const path = params.get('lpath');
      if (!path) return new HttpAnswer(400);
      if (!this.entries.has(path)) return new HttpAnswer(200, fail(CODES.CAT_NO_ROWS_FOUND));
      const ticket = randomUUID().replace(/-/g, '').slice(0, 16);
      this.tickets.set(ticket, { path, user, type: params.get('type') ?? 'read' });
      return new HttpAnswer(200, ok({ ticket }));
    }
    if (op === 'remove') {
      this.tickets.delete(params.get('name') ?? '');
      return new HttpAnswer(200, ok());
    }
    return new HttpAnswer(400);
  }

  private info(req: IncomingMessage): Record<string, unknown> {
    const base = { api_version: this.version, build: 'double', irods_zone: this.zone, max_number_of_rows_per_catalog_query: this.opts.maxRows, openid_connect_enabled: Object.keys(this.opts.accessTokens).length > 0 };
    const limits =
      this.version === '0.7.0'
        ? { max_number_of_streams_per_parallel_write_handle: this.opts.streamsPerHandle, max_size_of_request_body_in_bytes: this.opts.maxBodyBytes }
        : { max_number_of_parallel_write_streams: this.opts.streamsPerHandle, max_size_of_request_body_in_bytes: this.opts.maxBodyBytes };
    const authed = this.tokens.has(String(req.headers.authorization ?? '').replace(/^Bearer /, ''));
    return { ...base, ...limits, ...(authed && this.version === '0.7.0' ? { irods_server_version: '5.0.1' } : {}) };
  }

  private authenticate(req: IncomingMessage): HttpAnswer {
    const header = req.headers.authorization;
    if (!header || !header.startsWith('Basic ')) return new HttpAnswer(400);
    const decoded = Buffer.from(header.slice(6), 'base64').subarray(0, 128).toString('utf8');
    const colon = decoded.indexOf(':');
    const user = colon < 0 ? decoded : decoded.slice(0, colon);
    const password = colon < 0 ? '' : decoded.slice(colon + 1);
    const anonymous = user === 'anonymous' && password === '';
    if (!anonymous && (!user || !password || this.opts.users[user] !== password)) return new HttpAnswer(401);
    const token = randomUUID();
    this.tokens.set(token, { user, expires: Date.now() + this.opts.tokenLifetimeMs });
    return new HttpAnswer(200, token);
  }

  private user(req: IncomingMessage, params: Map<string, string>): string {
    const header = req.headers.authorization;
    if (!header || !header.startsWith('Bearer ')) throw new HttpAnswer(400);
    const token = header.slice(7);
    const mapped = this.opts.accessTokens[token];
    if (mapped) return mapped;
    const session = this.tokens.get(token);
    if (!session || session.expires < Date.now()) throw new HttpAnswer(401);
    if (this.faults.expireTokensAfter !== undefined && this.faults.expireTokensAfter-- <= 0) {
      this.faults.expireTokensAfter = undefined;
      this.tokens.clear();
      throw new HttpAnswer(401);
    }
    const ticket = params.get('ticket');
    if (ticket !== undefined && !this.tickets.has(ticket)) throw new HttpAnswer(500, fail(-892000, 'Error enabling ticket on connection.'));
    return session.user;
  }

  private may(user: string, path: string, need: string, params?: Map<string, string>): boolean {
    const ticket = params?.get('ticket');
    if (ticket) {
      const granted = this.tickets.get(ticket)!;
      const within = path === granted.path || path.startsWith(`${granted.path}/`);
      if (within && (need === 'read_object' || granted.type === 'write')) return true;
    }
    const entry = this.entries.get(path);
    return entry !== undefined && level(entry.acl.get(user)) >= level(need);
  }

  private statObject(user: string, params: Map<string, string>): HttpAnswer {
    const path = params.get('lpath');
    if (!path) return new HttpAnswer(400);
    const entry = this.entries.get(path);
    if (entry?.kind !== 'data' || !this.may(user, path, 'read_metadata', params)) return new HttpAnswer(200, fail(CODES.NOT_A_DATA_OBJECT));
    const permissions = [...entry.acl].map(([name, perm]) => ({ name, zone: this.zone, type: 'rodsuser', perm }));
    return new HttpAnswer(200, ok({ type: 'data_object', permissions, size: entry.size, checksum: entry.checksum, modified_at: entry.modifiedAt }));
  }

  private read(user: string, params: Map<string, string>): HttpAnswer | ReadAnswer {
    const path = params.get('lpath');
    if (!path) return new HttpAnswer(400);
    const offset = optionalCount(params.get('offset'));
    const count = optionalCount(params.get('count'));
    if (offset === null || count === null) return new HttpAnswer(400);
    const entry = this.entries.get(path);
    if (entry?.kind !== 'data' || !this.may(user, path, 'read_object', params)) return new HttpAnswer(404);
    const from = offset ?? 0;
    if (from > entry.size) return new HttpAnswer(500);
    const length = Math.min(count ?? entry.size - from, entry.size - from);
    return new ReadAnswer(entry.bytes.subarray(from, from + length));
  }

  private write(user: string, params: Map<string, string>, bytes: Buffer | undefined): HttpAnswer {
    if (bytes === undefined) return new HttpAnswer(400);
    const offset = optionalCount(params.get('offset'));
    if (offset === null) return new HttpAnswer(400);
    if (this.faults.failWrites > 0) {
      this.faults.failWrites -= 1;
      return new HttpAnswer(500);
    }
    if (this.faults.breakStreamOnWrite > 0) {
      this.faults.breakStreamOnWrite -= 1;
      return new HttpAnswer(500, fail(CODES.INVALID_HANDLE, 'Output stream is bad. Client should restart the entire transfer.'));
    }
    if (this.faults.corruptWrites > 0 && bytes.length > 0) {
      this.faults.corruptWrites -= 1;
      bytes = Buffer.from(bytes);
      bytes[bytes.length >> 1] ^= 0xff;
    }
    const handleId = params.get('parallel-write-handle');
    if (handleId !== undefined) {
      const handle = this.handles.get(handleId);
      if (!handle) return new HttpAnswer(400);
      const index = params.get('stream-index');
      if (index !== undefined) {
        const i = Number(index);
        if (!Number.isInteger(i) || i < 0 || i >= handle.streams) return new HttpAnswer(400);
      } else if (handle.busy.every(Boolean)) return new HttpAnswer(429);
      if (handle.chunks.has(offset ?? 0)) this.rewrittenChunks.push(`${handleId}@${offset ?? 0}`);
      handle.chunks.delete(offset ?? 0);
      handle.chunks.set(offset ?? 0, bytes);
      return new HttpAnswer(200, ok());
    }
    const path = params.get('lpath');
    if (!path) return new HttpAnswer(400);
    const openFailure = this.version === '0.7.0' ? CODES.CAT_NO_ACCESS_PERMISSION : CODES.INVALID_HANDLE;
    let entry = this.entries.get(path);
    if (entry?.kind === 'coll') return new HttpAnswer(200, fail(-833000));
    if (!entry) {
      if (!this.isCollection(parentOf(path))) return new HttpAnswer(200, fail(CODES.OBJ_PATH_DOES_NOT_EXIST));
      if (!this.may(user, parentOf(path), 'modify_object', params)) return new HttpAnswer(200, fail(openFailure));
      entry = { kind: 'data', bytes: Buffer.alloc(0), size: 0, modifiedAt: now(), checksum: '', acl: new Map([[user, 'own']]) };
      this.entries.set(path, entry);
    } else if (!this.may(user, path, 'modify_object', params)) return new HttpAnswer(200, fail(openFailure));
    if (entry.openBy) return new HttpAnswer(200, fail(CODES.HIERARCHY_ERROR));
    const truncate = params.get('truncate') !== '0';
    if (truncate && (offset ?? 0) > 0) this.truncatingWrites.push(`${path}@${offset}`);
    if (truncate) entry.size = 0;
    const at = params.get('append') === '1' ? entry.size : offset ?? 0;
    Object.assign(entry, place(entry.bytes, entry.size, at, bytes), { modifiedAt: now(), checksum: '' });
    return new HttpAnswer(200, ok());
  }

  private parallelInit(user: string, params: Map<string, string>): HttpAnswer {
    const path = params.get('lpath');
    const count = params.get('stream-count');
    if (!path || count === undefined) return new HttpAnswer(400);
    const streams = Number(count);
    if (!Number.isInteger(streams) || (this.version === '0.7.0' && streams < 1) || streams > this.opts.streamsPerHandle) return new HttpAnswer(400);
    if (this.faults.rejectInits > 0) {
      this.faults.rejectInits -= 1;
      return new HttpAnswer(503);
    }
    if (this.version === '0.7.0' && this.activeStreams + streams > this.opts.globalStreams) return new HttpAnswer(503);
    let entry = this.entries.get(path);
    const openFailure = this.version === '0.7.0' ? CODES.CAT_NO_ACCESS_PERMISSION : CODES.INVALID_HANDLE;
    if (entry?.kind === 'coll') return new HttpAnswer(200, fail(-833000));
    if (!entry) {
      if (!this.isCollection(parentOf(path))) return new HttpAnswer(200, fail(CODES.OBJ_PATH_DOES_NOT_EXIST));
      if (!this.may(user, parentOf(path), 'modify_object', params)) return new HttpAnswer(200, fail(openFailure));
      // The replica exists from here on but stays empty to readers until the primary stream closes.
      entry = { kind: 'data', bytes: Buffer.alloc(0), size: 0, modifiedAt: now(), checksum: '', acl: new Map([[user, 'own']]) };
      this.entries.set(path, entry);
    } else if (!this.may(user, path, 'modify_object', params)) return new HttpAnswer(200, fail(openFailure));
    if (entry.openBy) return new HttpAnswer(200, fail(CODES.HIERARCHY_ERROR));
    const handle = randomUUID();
    const keep = params.get('truncate') === '0' || params.get('append') === '1';
    entry.openBy = handle;
    this.handles.set(handle, { path, user, streams, busy: new Array(streams).fill(false), base: keep ? Buffer.from(entry.bytes.subarray(0, entry.size)) : Buffer.alloc(0), chunks: new Map() });
    this.activeStreams += streams;
    return new HttpAnswer(200, ok({ parallel_write_handle: handle }));
  }

  private parallelShutdown(params: Map<string, string>): HttpAnswer {
    const id = params.get('parallel-write-handle');
    if (id === undefined) return new HttpAnswer(400);
    const handle = this.handles.get(id);
    if (!handle) return new HttpAnswer(200, ok());
    this.handles.delete(id);
    this.activeStreams -= handle.streams;
    const entry = this.entries.get(handle.path);
    let size = handle.base.length;
    for (const [offset, chunk] of handle.chunks) size = Math.max(size, offset + chunk.length);
    const bytes = Buffer.alloc(size);
    handle.base.copy(bytes);
    for (const [offset, chunk] of handle.chunks) chunk.copy(bytes, offset);
    if (entry?.kind === 'data') Object.assign(entry, { bytes, size, modifiedAt: now(), checksum: '', openBy: undefined });
    return new HttpAnswer(200, ok());
  }

  private touch(user: string, params: Map<string, string>): HttpAnswer {
    const path = params.get('lpath');
    if (!path) return new HttpAnswer(400);
    const entry = this.entries.get(path);
    if (entry?.kind === 'coll') return new HttpAnswer(400, fail(CODES.NOT_A_DATA_OBJECT));
    if (entry) {
      entry.modifiedAt = now();
      return new HttpAnswer(200, ok());
    }
    if (params.get('no-create') === '1') return new HttpAnswer(200, ok());
    if (!this.isCollection(parentOf(path))) return new HttpAnswer(200, fail(CODES.OBJ_PATH_DOES_NOT_EXIST));
    if (!this.may(user, parentOf(path), 'modify_object')) return new HttpAnswer(200, fail(CODES.CAT_NO_ACCESS_PERMISSION));
    this.entries.set(path, { kind: 'data', bytes: Buffer.alloc(0), size: 0, modifiedAt: now(), checksum: '', acl: new Map([[user, 'own']]) });
    return new HttpAnswer(200, ok());
  }

  private removeObject(user: string, params: Map<string, string>): HttpAnswer {
    const path = params.get('lpath');
    const catalogOnly = params.get('catalog-only');
    if (!path || catalogOnly === undefined) return new HttpAnswer(400);
    if (catalogOnly === '1' && params.get('no-trash') === '1') return new HttpAnswer(400);
    const entry = this.entries.get(path);
    if (entry?.kind !== 'data') return new HttpAnswer(200, fail(CODES.CAT_NO_ROWS_FOUND));
    if (!this.may(user, path, 'delete_object')) return new HttpAnswer(200, fail(CODES.CAT_NO_ACCESS_PERMISSION));
    this.entries.delete(path);
    return new HttpAnswer(200, ok());
  }

  private truncate(user: string, params: Map<string, string>): HttpAnswer {
    const path = params.get('lpath');
    const size = optionalCount(params.get('size'));
    if (!path || size === undefined || size === null) return new HttpAnswer(400);
    const entry = this.entries.get(path);
    if (entry?.kind !== 'data') return new HttpAnswer(200, fail(CODES.NOT_A_DATA_OBJECT));
    if (!this.may(user, path, 'modify_object')) return new HttpAnswer(200, fail(CODES.CAT_NO_ACCESS_PERMISSION));
    Object.assign(entry, size <= entry.size ? { size } : place(entry.bytes, entry.size, size, Buffer.alloc(0)), { checksum: '' });
    return new HttpAnswer(200, ok({ additional_info: [] }));
  }

  private checksum(user: string, params: Map<string, string>, verify: boolean): HttpAnswer {
    const path = params.get('lpath');
    if (!path) return new HttpAnswer(400);
    const entry = this.entries.get(path);
    if (entry?.kind !== 'data' || !this.may(user, path, 'read_object')) return new HttpAnswer(200, fail(CODES.CAT_NO_ROWS_FOUND));
    const data = entry.bytes.subarray(0, entry.size);
    const computed = this.opts.checksum === 'md5' ? createHash('md5').update(data).digest('hex') : `sha2:${createHash('sha256').update(data).digest('base64')}`;
    if (verify) {
      if (!entry.checksum || entry.checksum === computed) return new HttpAnswer(200, ok({ r_error_info: [] }));
      return new HttpAnswer(200, { irods_response: { status_code: CODES.CHECK_VERIFICATION_RESULTS }, results: [{ message: 'checksum mismatch' }], r_error_info: [] });
    }
    if (!entry.checksum || params.get('force') === '1') entry.checksum = computed;
    return new HttpAnswer(200, ok({ checksum: entry.checksum }));
  }

  private statCollection(user: string, params: Map<string, string>): HttpAnswer {
    const path = params.get('lpath');
    if (!path) return new HttpAnswer(400);
    const entry = this.entries.get(path);
    if (entry?.kind !== 'coll' || !this.may(user, path, 'read_object', params)) return new HttpAnswer(200, fail(CODES.NOT_A_COLLECTION));
    const permissions = [...entry.acl].map(([name, perm]) => ({ name, zone: this.zone, type: 'rodsuser', perm }));
    return new HttpAnswer(200, ok({ type: 'collection', inheritance_enabled: false, permissions, registered: false, modified_at: entry.modifiedAt }));
  }

  private list(user: string, params: Map<string, string>): HttpAnswer {
    const path = params.get('lpath');
    if (!path) return new HttpAnswer(400);
    if (this.entries.get(path)?.kind !== 'coll' || !this.may(user, path, 'read_object', params)) return new HttpAnswer(400, fail(CODES.NOT_A_COLLECTION));
    const out: string[] = [];
    const walk = (dir: string) => {
      for (const child of this.children(dir)) {
        out.push(child);
        if (params.get('recurse') === '1' && this.isCollection(child)) walk(child);
      }
    };
    walk(path);
    return new HttpAnswer(200, ok({ entries: out.length ? out : null }));
  }

  private children(dir: string): string[] {
    const prefix = dir === '/' ? '/' : `${dir}/`;
    return [...this.entries.keys()].filter((p) => p !== dir && p.startsWith(prefix) && !p.slice(prefix.length).includes('/')).sort();
  }

  private createCollection(user: string, params: Map<string, string>): HttpAnswer {
    const path = params.get('lpath');
    if (!path) return new HttpAnswer(400);
    const existing = this.entries.get(path);
    if (existing?.kind === 'coll') return new HttpAnswer(200, ok({ created: false }));
    if (existing) return new HttpAnswer(200, fail(CODES.SYS_INVALID_INPUT_PARAM));
    const missing: string[] = [];
    let at = path;
    while (!this.entries.has(at)) {
      missing.unshift(at);
      at = parentOf(at);
    }
    if (this.entries.get(at)?.kind !== 'coll') return new HttpAnswer(200, fail(CODES.SYS_INVALID_INPUT_PARAM));
    if (missing.length > 1 && params.get('create-intermediates') !== '1') return new HttpAnswer(200, fail(CODES.OBJ_PATH_DOES_NOT_EXIST));
    if (!this.may(user, at, 'modify_object')) return new HttpAnswer(200, fail(CODES.CAT_NO_ACCESS_PERMISSION));
    for (const p of missing) this.entries.set(p, { kind: 'coll', modifiedAt: now(), acl: new Map([[user, 'own']]) });
    return new HttpAnswer(200, ok({ created: true }));
  }

  private removeCollection(user: string, params: Map<string, string>): HttpAnswer {
    const path = params.get('lpath');
    if (!path) return new HttpAnswer(400);
    if (!this.isCollection(path)) return new HttpAnswer(400, fail(CODES.NOT_A_COLLECTION));
    if (!this.may(user, path, 'delete_object')) return new HttpAnswer(200, fail(CODES.CAT_NO_ACCESS_PERMISSION));
    const below = [...this.entries.keys()].filter((p) => p.startsWith(`${path}/`));
    if (below.length && params.get('recurse') !== '1') return new HttpAnswer(200, fail(CODES.CAT_COLLECTION_NOT_EMPTY));
    for (const p of [path, ...below]) this.entries.delete(p);
    return new HttpAnswer(200, ok());
  }

  /** GenQuery1 for the shapes a stager sends: data objects of a collection (`=`) or below it (`like`). */
  private genquery(user: string, params: Map<string, string>): HttpAnswer {
    const query = params.get('query') ?? '';
    const match = /^select\s+COLL_NAME,\s*DATA_NAME,\s*DATA_SIZE,\s*DATA_CHECKSUM\s+where\s+COLL_NAME\s+(=|like)\s+'([^']*)'\s*$/i.exec(query.trim());
    if (!match) return new HttpAnswer(400, fail(CODES.SYS_INVALID_INPUT_PARAM, 'query not supported by the double'));
    const [, operator, operand] = match;
    const pattern = operator === '=' ? undefined : new RegExp(`^${operand.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/%/g, '.*').replace(/_/g, '.')}$`);
    const rows: string[][] = [];
    for (const [path, entry] of [...this.entries].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (entry.kind !== 'data' || level(entry.acl.get(user)) < level('read_metadata')) continue;
      const coll = parentOf(path);
      if (pattern ? pattern.test(coll) : coll === operand) rows.push([coll, path.slice(coll.length + 1), String(entry.size), entry.checksum]);
    }
    const offset = Math.max(0, Number(params.get('offset') ?? 0) || 0);
    const count = Math.min(this.opts.maxRows, Math.max(1, Number(params.get('count') ?? this.opts.maxRows) || this.opts.maxRows));
    return new HttpAnswer(200, ok({ rows: rows.slice(offset, offset + count) }));
  }
}

class ReadAnswer {
  constructor(readonly data: Buffer) {}
}

/** Writes `data` at `offset` into a growable buffer (gaps are zero), doubling capacity as needed. */
function place(buffer: Buffer, size: number, offset: number, data: Buffer): { bytes: Buffer; size: number } {
  const end = offset + data.length;
  let bytes = buffer;
  if (end > bytes.length) {
    bytes = Buffer.alloc(Math.max(end, Math.min(bytes.length * 2, end + 64 * 1024 * 1024)));
    buffer.copy(bytes, 0, 0, size);
  }
  if (offset > size) bytes.fill(0, size, offset);
  data.copy(bytes, offset);
  return { bytes, size: Math.max(size, end) };
}

function parentOf(path: string): string {
  const cut = path.lastIndexOf('/');
  return cut <= 0 ? '/' : path.slice(0, cut);
}

/** The server's decoding: split on & and =, drop pairs with more than one =, percent-decode, then + → space. */
function decodeForm(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const pair of text.split('&')) {
    if (!pair) continue;
    const parts = pair.split('=');
    if (parts.length > 2) continue;
    let value: string;
    try {
      value = decodeURIComponent(parts[1] ?? '');
    } catch {
      value = parts[1] ?? '';
    }
    out.set(parts[0], value.replace(/\+/g, ' '));
  }
  return out;
}

function decodeMultipart(body: Buffer, contentType: string): Map<string, Buffer> | undefined {
  const boundary = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  if (!boundary) return undefined;
  const delimiter = Buffer.from(`--${boundary[1] ?? boundary[2]}`);
  const out = new Map<string, Buffer>();
  let at = body.indexOf(delimiter);
  while (at >= 0) {
    const start = at + delimiter.length;
    if (body.subarray(start, start + 2).toString() === '--') break;
    const headerEnd = body.indexOf('\r\n\r\n', start);
    const next = body.indexOf(delimiter, start);
    if (headerEnd < 0 || next < 0) return undefined;
    const headers = body.subarray(start, headerEnd).toString('utf8');
    const name = /name="([^"]*)"/i.exec(headers)?.[1];
    if (name !== undefined) out.set(name, body.subarray(headerEnd + 4, next - 2));
    at = next;
  }
  return out;
}

function headerParam(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[`irods-api-request-${name}`];
  // Header values reach the server as raw bytes: latin1 characters stand for the UTF-8 bytes sent.
  return typeof value === 'string' ? Buffer.from(value, 'latin1').toString('utf8') : undefined;
}

function optionalCount(value: string | undefined): number | undefined | null {
  if (value === undefined) return undefined;
  return /^\d+$/.test(value) ? Number(value) : null;
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | 'too-large'> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) return 'too-large';
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

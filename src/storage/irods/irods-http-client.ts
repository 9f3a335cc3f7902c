import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { Agent, Dispatcher, request } from 'undici';
import { DomainError, ErrorCode } from '../../domain/domain-error';
import { errorMessage } from '../../common/redact';
import type { IrodsAuth } from '../../config/irods-zone-entries';

// One zone's iRODS HTTP API (irods/irods_client_http_api): authentication, the server's limits from /info, and
// requests whose answers are checked twice, because the server reports most iRODS failures as HTTP 200 with a
// negative irods_response.status_code.

export interface IrodsLimits {
  apiVersion: string;
  /** Largest request body the server accepts; a longer one is answered by closing the connection. */
  maxBodyBytes: number;
  streamsPerHandle: number;
  maxRows: number;
  /** The header-based write (0.6.0+) sends raw bytes; older servers need multipart. */
  headerWrite: boolean;
}

/** The server asked for the whole transfer to start again (its write stream went bad). */
export class IrodsRestartRequired extends DomainError {}

const CODE_NAMES: Record<number, string> = {
  [-13000]: 'SYS_NO_API_PRIV',
  [-130000]: 'SYS_INVALID_INPUT_PARAM',
  [-170000]: 'NOT_A_COLLECTION',
  [-171000]: 'NOT_A_DATA_OBJECT',
  [-175000]: 'INVALID_HANDLE',
  [-358000]: 'OBJ_PATH_DOES_NOT_EXIST',
  [-407000]: 'CHECK_VERIFICATION_RESULTS',
  [-808000]: 'CAT_NO_ROWS_FOUND',
  [-818000]: 'CAT_NO_ACCESS_PERMISSION',
  [-833000]: 'CAT_NAME_EXISTS_AS_COLLECTION',
  [-1803000]: 'HIERARCHY_ERROR',
};
const DENIED_CODES = new Set([-13000, -818000]);
const MISSING_CODES = new Set([-170000, -171000, -358000, -808000]);

export interface IrodsAnswer {
  irods_response?: { status_code?: number; status_message?: string };
  [field: string]: unknown;
}

export interface IrodsCall {
  /** What the caller is doing, for messages ("irods://zone/path"). */
  subject: string;
  signal?: AbortSignal;
  /** Status codes the caller handles itself (returned, not thrown). */
  accept?: readonly number[];
}

export class IrodsHttpClient {
  private token?: Promise<string>;
  private limits?: Promise<IrodsLimits>;

  constructor(
    readonly zone: string,
    private readonly baseUrl: string,
    private readonly auth: IrodsAuth | undefined,
    private readonly agent: Agent,
  ) {}

  /** The server's limits, read once from /info (no authentication needed). */
  info(call: IrodsCall): Promise<IrodsLimits> {
    this.limits ??= this.readInfo(call).catch((err) => {
      this.limits = undefined;
      throw err;
    });
    return this.limits;
  }

  /** A GET op whose answer is JSON. */
  async get(endpoint: string, params: Record<string, string>, call: IrodsCall): Promise<IrodsAnswer> {
    const res = await this.send('GET', `${endpoint}?${encodeQuery(params)}`, {}, undefined, call);
    return this.json(res, call);
  }

  /** A POST op sent as multipart, whose values travel raw (a urlencoded `+` would reach iRODS as a space). */
  async post(endpoint: string, params: Record<string, string | Buffer>, call: IrodsCall): Promise<IrodsAnswer> {
    const boundary = `tesp-${randomBytes(12).toString('hex')}`;
    const res = await this.send('POST', endpoint, { 'content-type': `multipart/form-data; boundary=${boundary}` }, multipart(boundary, params), call);
    return this.json(res, call);
  }

  /** The header-based write (0.6.0+): parameters in headers, the body is the bytes. */
  async headerWrite(params: Record<string, string>, bytes: Buffer, call: IrodsCall): Promise<IrodsAnswer> {
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream', 'irods-api-request-op': 'write' };
    // Header values must be latin1: sending the UTF-8 bytes as latin1 characters delivers them unchanged.
    for (const [name, value] of Object.entries(params)) headers[`irods-api-request-${name}`] = Buffer.from(value, 'utf8').toString('latin1');
    const res = await this.send('POST', 'data-objects', headers, bytes, call);
    return this.json(res, call);
  }

  /** A read op's body as a stream, after its status was checked. The caller counts the bytes. */
  async read(params: Record<string, string>, call: IrodsCall): Promise<Readable> {
    const res = await this.send('GET', `data-objects?${encodeQuery(params)}`, {}, undefined, call);
    if (res.statusCode !== 200) {
      await this.json(res, call);
    }
    return res.body;
  }

  private async readInfo(call: IrodsCall): Promise<IrodsLimits> {
    const res = await this.attempt('GET', 'info', {}, undefined, undefined, call);
    const info = (await this.json(res, call)) as Record<string, unknown>;
    const num = (...keys: string[]) => keys.map((k) => info[k]).find((v): v is number => typeof v === 'number');
    const apiVersion = typeof info.api_version === 'string' ? info.api_version : '0.0.0';
    const [major, minor] = apiVersion.split('.').map(Number);
    return {
      apiVersion,
      maxBodyBytes: num('max_size_of_request_body_in_bytes', 'max_http_request_size_in_bytes') ?? 8 * 1024 * 1024,
      streamsPerHandle: num('max_number_of_streams_per_parallel_write_handle', 'max_number_of_parallel_write_streams') ?? 3,
      maxRows: num('max_number_of_rows_per_catalog_query') ?? 15,
      headerWrite: major > 0 || minor >= 6,
    };
  }

  /** Sends with the bearer token; a 401 means the token lapsed (or the API restarted): log in again once. */
  private async send(method: 'GET' | 'POST', path: string, headers: Record<string, string>, body: Buffer | undefined, call: IrodsCall): Promise<Dispatcher.ResponseData> {
    const token = await this.currentToken(call);
    const res = await this.attempt(method, path, headers, body, token, call);
    if (res.statusCode !== 401 || this.auth?.kind !== 'basic') return res;
    await res.body.dump();
    if (this.token && (await this.token.catch(() => undefined)) === token) this.token = undefined;
    return this.attempt(method, path, headers, body, await this.currentToken(call), call);
  }

  private async attempt(
    method: 'GET' | 'POST',
    path: string,
    headers: Record<string, string>,
    body: Buffer | undefined,
    token: string | undefined,
    call: IrodsCall,
  ): Promise<Dispatcher.ResponseData> {
    try {
      return await request(`${this.baseUrl}/${path}`, {
        method,
        headers: token ? { ...headers, authorization: `Bearer ${token}` } : headers,
        body,
        signal: call.signal,
        dispatcher: this.agent,
      });
    } catch (err) {
      // Connection resets, timeouts and closed sockets (the server's answer to an over-long body) may pass.
      const aborted = call.signal?.aborted;
      throw new DomainError(ErrorCode.StorageFailed, `${call.subject}: ${method} ${path.split('?')[0]} failed: ${errorMessage(err)}`, !aborted);
    }
  }

  private currentToken(call: IrodsCall): Promise<string | undefined> {
    if (!this.auth) {
      return Promise.reject(new DomainError(ErrorCode.StorageDenied, `${call.subject}: no credentials for iRODS zone "${this.zone}" (storage.irods.credentials or storage.irods.access_tokens)`));
    }
    if (this.auth.kind === 'bearer') return Promise.resolve(this.auth.token);
    this.token ??= this.authenticate(this.auth, call).catch((err) => {
      this.token = undefined;
      throw err;
    });
    return this.token;
  }

  private async authenticate(auth: { user: string; password: string }, call: IrodsCall): Promise<string> {
    const basic = Buffer.from(`${auth.user}:${auth.password}`, 'utf8').toString('base64');
    const res = await this.attempt('POST', 'authenticate', { authorization: `Basic ${basic}` }, undefined, undefined, { ...call, signal: undefined });
    const text = await res.body.text();
    if (res.statusCode === 401) {
      throw new DomainError(ErrorCode.StorageDenied, `${call.subject}: iRODS zone "${this.zone}" refused the credentials of user "${auth.user}" (HTTP 401); check storage.irods.credentials`);
    }
    if (res.statusCode !== 200 || !text.trim()) {
      throw new DomainError(ErrorCode.StorageFailed, `${call.subject}: iRODS authentication failed with HTTP ${res.statusCode}`, res.statusCode >= 500);
    }
    return text.trim();
  }

  /** Parses an answer and turns HTTP and iRODS failures into domain errors. */
  private async json(res: Dispatcher.ResponseData, call: IrodsCall): Promise<IrodsAnswer> {
    const text = await res.body.text().catch((err: unknown) => {
      throw new DomainError(ErrorCode.StorageFailed, `${call.subject}: answer broken off: ${errorMessage(err)}`, true);
    });
    let answer: IrodsAnswer = {};
    try {
      answer = text ? (JSON.parse(text) as IrodsAnswer) : {};
    } catch {
      answer = {};
    }
    const status = answer.irods_response?.status_code;
    const http = res.statusCode;
    if (http === 200 && (status === undefined || status >= 0)) return answer;
    if (call.accept?.includes(status ?? http)) return answer;
    throw irodsError(call.subject, http, status, answer.irods_response?.status_message, retryAfter(res.headers['retry-after']));
  }
}

export function irodsError(subject: string, http: number, status: number | undefined, message: string | undefined, retryAfterMs?: number): DomainError {
  const code = status !== undefined && status < 0 ? ` iRODS ${status}${CODE_NAMES[status] ? ` ${CODE_NAMES[status]}` : ''}` : '';
  const detail = `HTTP ${http}${code ? `,${code}` : ''}${message ? `: ${message}` : ''}`;
  if (http === 401) return new DomainError(ErrorCode.StorageDenied, `${subject}: iRODS refused the token (${detail}); check storage.irods.access_tokens`);
  if (http === 500 && /restart the entire transfer/i.test(message ?? '')) return new IrodsRestartRequired(ErrorCode.StorageFailed, `${subject}: ${detail}`);
  if (http === 429 || http === 503) return new DomainError(ErrorCode.StorageFailed, `${subject}: the server is busy (${detail})`, true, retryAfterMs);
  if (http >= 500) return new DomainError(ErrorCode.StorageFailed, `${subject}: ${detail}`, true);
  if (status !== undefined && DENIED_CODES.has(status)) return new DomainError(ErrorCode.StorageDenied, `${subject}: permission denied (${detail})`);
  if (http === 404 || (status !== undefined && MISSING_CODES.has(status))) return new DomainError(ErrorCode.StorageFailed, `${subject}: no such data object or collection, or no permission to read it (${detail})`);
  return new DomainError(ErrorCode.StorageFailed, `${subject}: ${detail}`);
}

/** Query strings the way the server decodes them: percent-encoded values (it turns `+` into a space). */
function encodeQuery(params: Record<string, string>): string {
  return Object.entries(params)
    .map(([k, v]) => `${k}=${encodeURIComponent(v)}`)
    .join('&');
}

function multipart(boundary: string, params: Record<string, string | Buffer>): Buffer {
  const pieces: Buffer[] = [];
  for (const [name, value] of Object.entries(params)) {
    const type = typeof value === 'string' ? '' : '\r\nContent-Type: application/octet-stream';
    pieces.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"${type}\r\n\r\n`), Buffer.from(value), Buffer.from('\r\n'));
  }
  pieces.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(pieces);
}

function retryAfter(value: string | string[] | undefined): number | undefined {
  const seconds = Number(Array.isArray(value) ? value[0] : value);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : undefined;
}

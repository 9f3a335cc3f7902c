import { promises as fs } from 'node:fs';
import { Client, ConnectConfig, SFTPWrapper, Stats } from 'ssh2';
import type { FileEntryWithStats } from 'ssh2';
import { DomainError, ErrorCode } from '../../domain/domain-error';
import { errorMessage } from '../../common/redact';
import type { SftpHostLogin } from '../../config/sftp-host-entries';
import { knownHostsName, verifyHostKey } from './known-hosts';

// One SSH connection with its SFTP channel, the SFTP requests as promises, and the translation of ssh2's errors
// into DomainErrors. Secrets (passwords, passphrases, key files' contents) are read when a connection opens and
// never enter a message.

/** SFTP status codes (RFC draft-ietf-secsh-filexfer-02) the backend tells apart. */
export const SFTP_NO_SUCH_FILE = 2;
export const SFTP_PERMISSION_DENIED = 3;

export interface HostKeyPolicy {
  /** Path of the known_hosts file; empty: no host is known. */
  knownHosts: string;
  trustUnknownHosts: boolean;
  warn: (message: string) => void;
}

export interface SessionTarget {
  login: SftpHostLogin;
  /** What is transferred (the URL without credentials), for messages. */
  shown: string;
}

const TRANSIENT_ERRNO = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'ECONNABORTED', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

export class SftpSession {
  private closed = false;
  readonly ended: Promise<void>;

  constructor(
    private readonly client: Client,
    readonly sftp: SFTPWrapper,
    private readonly target: SessionTarget,
  ) {
    this.ended = new Promise((resolve) => client.once('close', () => resolve()));
    client.once('close', () => (this.closed = true));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  end(): void {
    this.closed = true;
    this.client.end();
  }

  private call<T>(what: string, run: (done: (err: Error | undefined | null, value?: T) => void) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.closed) return reject(new DomainError(ErrorCode.StorageFailed, `${this.target.shown}: the SSH connection closed`, true));
      run((err, value) => (err ? reject(translateSftpError(this.target, err, what)) : resolve(value as T)));
    });
  }

  stat(path: string): Promise<Stats> {
    return this.call(`stat ${path}`, (done) => this.sftp.stat(path, done));
  }

  readdir(path: string): Promise<FileEntryWithStats[]> {
    return this.call(`list ${path}`, (done) => this.sftp.readdir(path, done));
  }

  open(path: string, flags: 'r' | 'w' | 'r+'): Promise<Buffer> {
    return this.call(`open ${path}`, (done) => this.sftp.open(path, flags, done));
  }

  fstat(handle: Buffer): Promise<Stats> {
    return this.call('fstat', (done) => this.sftp.fstat(handle, done));
  }

  closeHandle(handle: Buffer): Promise<void> {
    return this.call('close', (done) => this.sftp.close(handle, done));
  }

  /** Reads `length` bytes at `position` (ssh2 splits long reads; a short answer is continued); fewer only at EOF. */
  async readAt(handle: Buffer, position: number, length: number): Promise<Buffer> {
    const buffer = Buffer.allocUnsafe(length);
    let filled = 0;
    while (filled < length) {
      const got = await this.call<number>('read', (done) =>
        this.sftp.read(handle, buffer, filled, length - filled, position + filled, (err, bytesRead) => done(err, bytesRead)),
      );
      if (!got) break;
      filled += got;
    }
    return filled < length ? buffer.subarray(0, filled) : buffer;
  }

  writeAt(handle: Buffer, data: Buffer, position: number): Promise<void> {
    return this.call('write', (done) => this.sftp.write(handle, data, 0, data.length, position, done));
  }

  unlink(path: string): Promise<void> {
    return this.call(`remove ${path}`, (done) => this.sftp.unlink(path, done));
  }

  mkdir(path: string): Promise<void> {
    return this.call(`mkdir ${path}`, (done) => this.sftp.mkdir(path, done));
  }

  /** Replaces `to` with `from` atomically where the server offers posix-rename (OpenSSH), else removes `to` first. */
  async replace(from: string, to: string): Promise<void> {
    const extensions = (this.sftp as unknown as { _extensions?: Record<string, string> })._extensions ?? {};
    if (extensions['posix-rename@openssh.com']) {
      return this.call(`rename to ${to}`, (done) => this.sftp.ext_openssh_rename(from, to, done));
    }
    await this.unlink(to).catch((err: unknown) => {
      if (!isNoSuchFile(err)) throw err;
    });
    return this.call(`rename to ${to}`, (done) => this.sftp.rename(from, to, done));
  }

  /** mkdir -p: creates the missing directories of an absolute or home-relative path. */
  async mkdirs(dir: string): Promise<void> {
    if (dir === '/' || dir === '.' || dir === '') return;
    try {
      if ((await this.stat(dir)).isDirectory()) return;
      throw new DomainError(ErrorCode.StorageFailed, `${this.target.shown}: ${dir} exists and is not a directory`);
    } catch (err) {
      if (!isNoSuchFile(err)) throw err;
    }
    const parent = dir.replace(/\/[^/]+\/?$/, '') || (dir.startsWith('/') ? '/' : '.');
    if (parent !== dir) await this.mkdirs(parent);
    // Another transfer may create it at the same moment: only a directory that still is missing is an error.
    await this.mkdir(dir).catch(async (err: unknown) => {
      if (!(await this.stat(dir).then((s) => s.isDirectory(), () => false))) throw err;
    });
  }
}

/** A request the server answered with an SFTP status other than OK. */
export class SftpStatusError extends DomainError {
  constructor(message: string, readonly status: number) {
    super(ErrorCode.StorageFailed, message);
  }
}

export function isNoSuchFile(err: unknown): boolean {
  return err instanceof SftpStatusError && err.status === SFTP_NO_SUCH_FILE;
}

/** Opens an SSH connection and its SFTP channel, checking the host key; `signal` closes it. */
export async function openSession(target: SessionTarget, policy: HostKeyPolicy, timeoutMs: number, signal?: AbortSignal): Promise<SftpSession> {
  if (signal?.aborted) throw new DomainError(ErrorCode.StorageFailed, `${target.shown}: aborted`);
  const { login } = target;
  const config = await loginConfig(target);
  const knownHostsText = policy.knownHosts ? await readKnownHosts(policy.knownHosts) : '';
  const client = new Client();
  let hostKeyRefusal: DomainError | undefined;
  const name = knownHostsName(login.host, login.port);
  const connected = new Promise<SFTPWrapper>((resolve, reject) => {
    const fail = (err: unknown) => {
      client.end();
      reject(hostKeyRefusal ?? (signal?.aborted ? new DomainError(ErrorCode.StorageFailed, `${target.shown}: aborted`) : translateConnectError(target, err)));
    };
    client.once('error', fail);
    const closedEarly = () => fail(new Error('the connection closed during the handshake'));
    client.once('close', closedEarly);
    client.once('ready', () => {
      client.sftp((err, sftp) => {
        if (err) return fail(err);
        client.removeListener('error', fail);
        client.removeListener('close', closedEarly);
        // Errors after the handshake surface through the requests in flight; this keeps them from crashing.
        client.on('error', () => undefined);
        resolve(sftp);
      });
    });
  });
  const abort = () => client.end();
  signal?.addEventListener('abort', abort, { once: true });
  try {
    client.connect({
      ...config,
      host: login.host,
      port: login.port,
      readyTimeout: timeoutMs,
      keepaliveInterval: Math.max(1000, Math.floor(timeoutMs / 3)),
      keepaliveCountMax: 3,
      hostVerifier: (key: Buffer) => {
        const verdict = verifyHostKey(knownHostsText, login.host, login.port, key);
        if (verdict === 'known') return true;
        if (verdict === 'unknown' && policy.trustUnknownHosts) {
          policy.warn(`accepting the unknown host key of ${name} (storage.sftp.trust_unknown_hosts is on)`);
          return true;
        }
        hostKeyRefusal = new DomainError(
          ErrorCode.StorageDenied,
          verdict === 'unknown' ? `${target.shown}: host key of ${name} is not in storage.sftp.known_hosts`
            : verdict === 'changed' ? `${target.shown}: host key of ${name} changed (it differs from the one in storage.sftp.known_hosts)`
            : `${target.shown}: host key of ${name} is revoked in storage.sftp.known_hosts`,
        );
        return false;
      },
    });
    const sftp = await connected;
    const session = new SftpSession(client, sftp, target);
    client.once('close', () => signal?.removeEventListener('abort', abort));
    return session;
  } catch (err) {
    signal?.removeEventListener('abort', abort);
    client.end();
    // connect() itself throws for a key it cannot parse (a wrong passphrase).
    throw translateConnectError(target, err);
  }
}

async function readKnownHosts(file: string): Promise<string> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new DomainError(ErrorCode.StorageDenied, `storage.sftp.known_hosts (${file}) cannot be read: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`);
  }
}

/** The login part of ssh2's ConnectConfig, secrets read from their files now (so a rotated key is picked up). */
async function loginConfig(target: SessionTarget): Promise<ConnectConfig> {
  const { login } = target;
  const readSecret = async (option: string, file: string): Promise<Buffer> => {
    try {
      return await fs.readFile(file);
    } catch (err) {
      // The path is configuration, not a secret; the error code says why (ENOENT, EACCES).
      throw new DomainError(ErrorCode.StorageFailed, `${target.shown}: the ${option} of ${login.host}:${login.port} in storage.sftp.hosts (${file}) cannot be read: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  };
  const config: ConnectConfig = { username: login.user };
  if (login.keyFile) config.privateKey = await readSecret('key_file', login.keyFile);
  if (login.passphraseFile) config.passphrase = (await readSecret('passphrase_file', login.passphraseFile)).toString('utf8').replace(/\r?\n$/, '');
  if (login.passwordFile) config.password = (await readSecret('password_file', login.passwordFile)).toString('utf8').replace(/\r?\n$/, '');
  else if (login.password !== undefined) config.password = login.password;
  if (login.agent) config.agent = login.agent;
  return config;
}

function translateConnectError(target: SessionTarget, err: unknown): DomainError {
  if (err instanceof DomainError) return err;
  const { login } = target;
  const level = (err as { level?: string }).level;
  const message = errorMessage(err);
  if (level === 'client-authentication') {
    return new DomainError(ErrorCode.StorageDenied, `${target.shown}: login as "${login.user}" on ${login.host}:${login.port} refused (${message})`);
  }
  // ssh2 parses the key before connecting: a wrong passphrase or a damaged file shows here.
  if (/privateKey|passphrase|encrypted|Unsupported key format|Cannot parse/i.test(message)) {
    return new DomainError(ErrorCode.StorageFailed, `${target.shown}: the key_file of ${login.host}:${login.port} in storage.sftp.hosts cannot be used (${scrubKeyMessage(message)})`);
  }
  const code = (err as NodeJS.ErrnoException).code;
  const transient = level === 'client-socket' || level === 'client-timeout' || (code !== undefined && TRANSIENT_ERRNO.has(code)) || /timed out|closed|reset|socket/i.test(message);
  return new DomainError(ErrorCode.StorageFailed, `${target.shown}: SSH connection to ${login.host}:${login.port} failed: ${message}`, transient);
}

/** ssh2's key messages name the problem, not the secret; this keeps only the first line, to be safe. */
function scrubKeyMessage(message: string): string {
  return message.split('\n')[0].slice(0, 200);
}

/** An SFTP status error (err.code a status number) or a broken channel, as a DomainError naming the operation. */
export function translateSftpError(target: SessionTarget, err: unknown, what: string): DomainError {
  if (err instanceof DomainError) return err;
  const code = (err as { code?: unknown }).code;
  const message = errorMessage(err);
  if (typeof code === 'number') {
    const text = code === SFTP_NO_SUCH_FILE ? 'no such file or directory' : code === SFTP_PERMISSION_DENIED ? 'permission denied' : message;
    return new SftpStatusError(`${target.shown}: ${what}: ${text}`, code);
  }
  // Not a status: the channel or connection went away under the request ("No response from server", a reset).
  return new DomainError(ErrorCode.StorageFailed, `${target.shown}: ${what}: ${message}`, true);
}

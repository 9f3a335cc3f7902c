// The SFTP backend against a real OpenSSH server (test/support/sshd.ts): broken connections in the middle of
// transfers (through a proxy that resets them), logins and host keys that must be refused without leaking a
// secret, parallel requests, and directory listings.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { DomainError, ErrorCode } from '../../src/domain/domain-error';
import { SftpStorageBackend, SftpStorageSettings } from '../../src/storage/sftp/sftp-storage.backend';
import { CuttingProxy, startCuttingProxy } from '../support/cutting-proxy';
import { describeWhen } from '../support/service-check';
import { Sshd, sshdAvailable, startSshd } from '../support/sshd';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const MiB = 1024 * 1024;

const patterned = (length: number) => {
  const data = Buffer.alloc(length);
  for (let i = 0; i < length; i++) data[i] = (i * 31 + (i >> 12)) % 251;
  return data;
};

/** The error a promise rejects with (the test fails if it resolves). */
async function failure(attempt: Promise<unknown>): Promise<DomainError> {
  const err = await attempt.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DomainError);
  return err as DomainError;
}

describeWhen('SFTP storage: resumes, refusals, parallelism', sshdAvailable(), 'no /usr/sbin/sshd (install openssh-server)', () => {
  let sshd: Sshd;
  let remote: string;
  let local: string;

  beforeAll(async () => {
    sshd = await startSshd();
  });

  afterAll(async () => {
    await sshd?.stop();
  });

  beforeEach(() => {
    remote = mkdtempSync(path.join(sshd.dataDir, 'run-'));
    local = mkdtempSync(path.join(os.tmpdir(), 'tesp-sftp-local-'));
  });

  afterEach(() => {
    rmSync(remote, { recursive: true, force: true });
    rmSync(local, { recursive: true, force: true });
  });

  const settingsFor = (port: number, login: string, extra: Partial<SftpStorageSettings> = {}): SftpStorageSettings => ({
    hosts: [`127.0.0.1:${port}=${login}`],
    known_hosts: sshd.knownHosts,
    trust_unknown_hosts: false,
    timeout_ms: 10_000,
    retries: 3,
    retry_base_ms: 20,
    retry_max_ms: 200,
    parallel_requests: 8,
    ...extra,
  });
  const keyLogin = () => `${sshd.user};key_file=${sshd.key.file}`;
  const backendOn = (port: number, login = keyLogin(), extra: Partial<SftpStorageSettings> = {}, parts = { partBytes: 4 * MiB, parallel: 4 }) =>
    new SftpStorageBackend(settingsFor(port, login, extra), parts);
  const urlOn = (port: number, rel: string) => `sftp://127.0.0.1:${port}${remote}/${rel}`;

  describe('through a proxy that resets the connection in the middle', () => {
    let proxy: CuttingProxy;
    const data = patterned(24 * MiB + 5);

    beforeEach(async () => {
      proxy = await startCuttingProxy(sshd.port);
    });

    afterEach(async () => {
      await proxy.close();
    });

    it('resumes a parallel download on a new connection, and the bytes are right', async () => {
      writeFileSync(path.join(remote, 'big.bin'), data);
      const backend = backendOn(proxy.port);
      let progress = 0;
      proxy.armCut(10 * MiB, 'to-client');
      const bytes = await backend.download(urlOn(proxy.port, 'big.bin'), path.join(local, 'big.bin'), { onProgress: (n) => (progress += n) });
      expect(proxy.cuts()).toBe(1);
      expect(bytes).toBe(data.length);
      expect(progress).toBe(data.length);
      expect(sha256(readFileSync(path.join(local, 'big.bin')))).toBe(sha256(data));
      // The parts resumed where they stopped: far less than the file again went over the wire after the cut.
      expect(proxy.moved('to-client')).toBeLessThan(data.length + 8 * MiB);
      expect(readdirSync(local)).toEqual(['big.bin']);
    });

    it('resumes a parallel upload on a new connection, stores the right bytes and leaves no temporary file', async () => {
      writeFileSync(path.join(local, 'up.bin'), data);
      const backend = backendOn(proxy.port);
      proxy.armCut(10 * MiB, 'to-server');
      const sent = await backend.upload(path.join(local, 'up.bin'), urlOn(proxy.port, 'out/deeper/up.bin'));
      expect(proxy.cuts()).toBe(1);
      expect(sent).toEqual({ bytes: data.length, sha256: sha256(data) });
      expect(sha256(readFileSync(path.join(remote, 'out/deeper/up.bin')))).toBe(sha256(data));
      expect(readdirSync(path.join(remote, 'out/deeper'))).toEqual(['up.bin']);
      expect(proxy.moved('to-server')).toBeLessThan(data.length + 8 * MiB);
    });

    it('resumes a stream read at the offset reached', async () => {
      writeFileSync(path.join(remote, 'stream.bin'), data);
      const backend = backendOn(proxy.port);
      proxy.armCut(10 * MiB, 'to-client');
      const stream = await backend.openRead(urlOn(proxy.port, 'stream.bin'));
      const hash = createHash('sha256');
      let bytes = 0;
      for await (const chunk of stream) {
        hash.update(chunk as Buffer);
        bytes += (chunk as Buffer).length;
      }
      expect(proxy.cuts()).toBe(1);
      expect(bytes).toBe(data.length);
      expect(hash.digest('hex')).toBe(sha256(data));
    });

    it('fails a stream upload cut after bytes were taken, saying why it is not retried, and leaves nothing', async () => {
      const backend = backendOn(proxy.port);
      proxy.armCut(6 * MiB, 'to-server');
      const err = await failure(backend.uploadStream(Readable.from([data.subarray(0, 12 * MiB)]), urlOn(proxy.port, 'stream/cut.bin')));
      expect(err.message).toMatch(/a stream cannot be read again, so the upload is not retried/);
      expect(readdirSync(path.join(remote, 'stream'))).toEqual([]);
    });
  });

  describe('logins and host keys', () => {
    beforeEach(() => writeFileSync(path.join(remote, 'x.txt'), 'x'));
    const download = (backend: SftpStorageBackend) => backend.download(urlOn(sshd.port, 'x.txt'), path.join(local, 'x.txt'));

    it('logs in with a key encrypted with a passphrase (from passphrase_file)', async () => {
      const passphraseFile = sshd.writeFile('passphrase', `${sshd.encryptedKey.passphrase}\n`);
      const backend = backendOn(sshd.port, `${sshd.user};key_file=${sshd.encryptedKey.file};passphrase_file=${passphraseFile}`);
      expect(await download(backend)).toBe(1);
    });

    it('refuses an encrypted key with the wrong passphrase without showing it', async () => {
      const passphraseFile = sshd.writeFile('wrong-passphrase', 'not-the-passphrase-s3cret');
      const err = await failure(download(backendOn(sshd.port, `${sshd.user};key_file=${sshd.encryptedKey.file};passphrase_file=${passphraseFile}`)));
      expect(err.message).toMatch(/key_file of 127\.0\.0\.1:\d+ in storage\.sftp\.hosts cannot be used/);
      expect(err.message).not.toContain('not-the-passphrase-s3cret');
      expect(err.message).not.toContain(sshd.encryptedKey.passphrase!);
    });

    it('refuses a key the server does not know, naming the user', async () => {
      const err = await failure(download(backendOn(sshd.port, `${sshd.user};key_file=${sshd.strangerKey.file}`)));
      expect(err.code).toBe(ErrorCode.StorageDenied);
      expect(err.message).toContain(`login as "${sshd.user}" on 127.0.0.1:${sshd.port} refused`);
      expect(err.message).not.toContain(readFileSync(sshd.strangerKey.file, 'utf8').split('\n')[1]);
    });

    it('refuses an unknown user', async () => {
      const err = await failure(download(backendOn(sshd.port, `nosuchuser;key_file=${sshd.key.file}`)));
      expect(err.code).toBe(ErrorCode.StorageDenied);
      expect(err.message).toContain('login as "nosuchuser"');
    });

    it('refuses a password login (off on this server) without showing the password', async () => {
      const passwordFile = sshd.writeFile('password', 'pw-from-file-s3cret\n');
      const fromFile = await failure(download(backendOn(sshd.port, `${sshd.user};password_file=${passwordFile}`)));
      const inline = await failure(download(backendOn(sshd.port, `${sshd.user};password=pw-inline-s3cret`)));
      for (const err of [fromFile, inline]) {
        expect(err.code).toBe(ErrorCode.StorageDenied);
        expect(err.message).not.toMatch(/s3cret/);
      }
    });

    it('refuses a host whose key is not in known_hosts, and an empty known_hosts setting', async () => {
      const elsewhere = sshd.writeKnownHosts('known_hosts.other', [`other.example.org ${sshd.hostKeyLine}`]);
      for (const knownHosts of [elsewhere, '']) {
        const err = await failure(download(backendOn(sshd.port, keyLogin(), { known_hosts: knownHosts })));
        expect(err.code).toBe(ErrorCode.StorageDenied);
        expect(err.message).toContain(`host key of [127.0.0.1]:${sshd.port} is not in storage.sftp.known_hosts`);
      }
    });

    it('refuses a host whose key changed', async () => {
      const otherKey = readFileSync(`${sshd.strangerKey.file}.pub`, 'utf8').split(' ').slice(0, 2).join(' ');
      const changed = sshd.writeKnownHosts('known_hosts.changed', [`[127.0.0.1]:${sshd.port} ${otherKey}`]);
      const err = await failure(download(backendOn(sshd.port, keyLogin(), { known_hosts: changed })));
      expect(err.code).toBe(ErrorCode.StorageDenied);
      expect(err.message).toContain(`host key of [127.0.0.1]:${sshd.port} changed`);
      // Trusting unknown hosts does not extend to changed keys.
      await expect(download(backendOn(sshd.port, keyLogin(), { known_hosts: changed, trust_unknown_hosts: true }))).rejects.toThrow(/changed/);
    });

    it('accepts a hashed known_hosts entry for [host]:port', async () => {
      const hashed = sshd.writeKnownHosts('known_hosts.hashed', [`[127.0.0.1]:${sshd.port} ${sshd.hostKeyLine}`]);
      execFileSync('ssh-keygen', ['-H', '-f', hashed], { stdio: 'ignore' });
      expect(readFileSync(hashed, 'utf8')).toMatch(/^\|1\|/);
      expect(await download(backendOn(sshd.port, keyLogin(), { known_hosts: hashed }))).toBe(1);
    });

    it('accepts an unknown host with trust_unknown_hosts, with a warning', async () => {
      const warnings: string[] = [];
      const backend = new SftpStorageBackend(settingsFor(sshd.port, keyLogin(), { known_hosts: '', trust_unknown_hosts: true }), undefined, {}, (m) => warnings.push(m));
      expect(await download(backend)).toBe(1);
      expect(warnings).toEqual([`accepting the unknown host key of [127.0.0.1]:${sshd.port} (storage.sftp.trust_unknown_hosts is on)`]);
    });

    it('refuses at task creation a URL with a password, an unconfigured host or another user', async () => {
      const backend = backendOn(sshd.port);
      expect(await backend.problemWith(`sftp://${sshd.user}:pw-s3cret@127.0.0.1:${sshd.port}/x`)).toMatch(/must not carry a password/);
      expect(await backend.problemWith(`sftp://${sshd.user}:pw-s3cret@127.0.0.1:${sshd.port}/x`)).not.toContain('pw-s3cret');
      expect(await backend.problemWith('sftp://elsewhere.example.org/x')).toMatch(/elsewhere\.example\.org:22 is not in storage\.sftp\.hosts/);
      expect(await backend.problemWith(`sftp://someone@127.0.0.1:${sshd.port}/x`)).toMatch(/as "[^"]+", not "someone"/);
      expect(await backend.problemWith(`sftp://${sshd.user}@127.0.0.1:${sshd.port}/x`)).toBeUndefined();
      expect(backend.locations()).toEqual([`sftp://127.0.0.1:${sshd.port}`]);
    });

    it('refuses malformed storage.sftp.hosts entries, naming the host but no secret', () => {
      const make = (entry: string) => () => new SftpStorageBackend({ ...settingsFor(sshd.port, 'x'), hosts: [entry] });
      expect(make('example.org=alice')).toThrow(/"example\.org" has no way to log in/);
      expect(make('example.org=alice;colour=blue')).toThrow(/"example\.org" has an unknown option "colour"/);
      expect(make('example.org=alice;password=pw-one-s3cret;password_file=/x')).toThrow(/^(?!.*s3cret).*both password and password_file/);
      expect(make('sftp://example.org=alice;password=pw-two-s3cret')).toThrow(/^(?!.*s3cret).*is not host or host:port/);
      expect(make('example.org:99999=alice;agent=/s')).toThrow(/port of "example\.org:99999"/);
    });
  });

  describe('parallel requests and directories', () => {
    it('keeps several read and write requests of one file in flight', async () => {
      const data = patterned(8 * MiB + 3);
      writeFileSync(path.join(remote, 'par.bin'), data);
      writeFileSync(path.join(local, 'par-up.bin'), data);
      let peak = 0;
      const backend = new SftpStorageBackend(settingsFor(sshd.port, keyLogin(), { parallel_requests: 6 }), { partBytes: MiB, parallel: 3 }, {
        requestsInFlight: (n) => (peak = Math.max(peak, n)),
      });
      await backend.download(urlOn(sshd.port, 'par.bin'), path.join(local, 'par.bin'));
      expect(peak).toBe(6);
      expect(sha256(readFileSync(path.join(local, 'par.bin')))).toBe(sha256(data));
      peak = 0;
      await backend.upload(path.join(local, 'par-up.bin'), urlOn(sshd.port, 'par-up.bin'));
      expect(peak).toBe(6);
      expect(sha256(readFileSync(path.join(remote, 'par-up.bin')))).toBe(sha256(data));
      peak = 0;
      await backend.uploadStream(Readable.from([data]), urlOn(sshd.port, 'par-stream.bin'));
      expect(peak).toBe(6);
      expect(sha256(readFileSync(path.join(remote, 'par-stream.bin')))).toBe(sha256(data));
    });

    it('lists a directory recursively and tells files from directories', async () => {
      mkdirSync(path.join(remote, 'tree/sub/deeper'), { recursive: true });
      writeFileSync(path.join(remote, 'tree/a.txt'), 'A');
      writeFileSync(path.join(remote, 'tree/sub/b c.txt'), 'BB');
      writeFileSync(path.join(remote, 'tree/sub/deeper/d.txt'), 'DDD');
      const backend = backendOn(sshd.port);
      const base = urlOn(sshd.port, 'tree');
      expect(await backend.stat(base)).toEqual({ type: 'DIRECTORY' });
      expect(await backend.stat(`${base}/a.txt`)).toEqual({ type: 'FILE', size: 1 });
      expect(await backend.list(base)).toEqual([
        { url: `${base}/a.txt`, relativePath: 'a.txt', size: 1 },
        { url: `${base}/sub/b%20c.txt`, relativePath: 'sub/b c.txt', size: 2 },
        { url: `${base}/sub/deeper/d.txt`, relativePath: 'sub/deeper/d.txt', size: 3 },
      ]);
    });

    it('replaces an existing file on upload', async () => {
      writeFileSync(path.join(remote, 'again.txt'), 'old contents, longer than the new');
      writeFileSync(path.join(local, 'again.txt'), 'new');
      await backendOn(sshd.port).upload(path.join(local, 'again.txt'), urlOn(sshd.port, 'again.txt'));
      expect(readFileSync(path.join(remote, 'again.txt'), 'utf8')).toBe('new');
    });
  });
});

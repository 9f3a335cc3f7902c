// The FTP backend against a real vsftpd on 127.0.0.1:2121 (docker/start-vsftpd.sh).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chownSync, mkdirSync, mkdtempSync, promises as fs, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DomainError, ErrorCode } from '../../src/domain/domain-error';
import { FtpStorageBackend } from '../../src/storage/ftp/ftp-storage.backend';
import { FtpCuttingProxy, startFtpCuttingProxy } from '../support/ftp-cutting-proxy';
import { describeWhen, VSFTPD, vsftpdAvailable } from '../support/service-check';
import { describeStorageBackendContract } from './storage-backend.contract';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
// vsftpd listens on loopback.
const settings = { credentials: [], timeout_ms: 10_000, retries: 2, retry_base_ms: 20, retry_max_ms: 200, allow_private_addresses: true, allowed_private_cidrs: [] };

/** A fresh directory inside the FTP user's writable data/ directory, owned by that user. */
function runDirectory(): { name: string; hostDir: string } {
  const uid = Number(execFileSync('id', ['-u', VSFTPD.user], { encoding: 'utf8' }));
  const gid = Number(execFileSync('id', ['-g', VSFTPD.user], { encoding: 'utf8' }));
  const name = `run-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 6)}`;
  const hostDir = path.join(VSFTPD.dir, 'home-tes', 'data', name);
  mkdirSync(hostDir, { recursive: true });
  chownSync(hostDir, uid, gid);
  return { name, hostDir };
}

const available = vsftpdAvailable();
const missing = `no FTP server answers on 127.0.0.1:${VSFTPD.port} (run docker/start-vsftpd.sh)`;

describeWhen('FTP storage against vsftpd', available, missing, () => {
  describeStorageBackendContract('ftp', async () => {
    const { name, hostDir } = runDirectory();
    return {
      backend: new FtpStorageBackend(settings),
      urlFor: (rel) => `ftp://${VSFTPD.user}:${VSFTPD.password}@127.0.0.1:${VSFTPD.port}/data/${name}/${rel}`,
      seed: async (rel, data) => {
        mkdirSync(path.dirname(path.join(hostDir, rel)), { recursive: true });
        await fs.writeFile(path.join(hostDir, rel), data);
      },
      read: (rel) => fs.readFile(path.join(hostDir, rel)),
      cleanup: async () => rmSync(hostDir, { recursive: true, force: true }),
    };
  });

  describe('FtpStorageBackend specifics', () => {
    let run: { name: string; hostDir: string };
    let local: string;

    beforeEach(() => {
      run = runDirectory();
      local = mkdtempSync(path.join(os.tmpdir(), 'tesp-ftp-local-'));
    });

    afterEach(() => {
      rmSync(run.hostDir, { recursive: true, force: true });
      rmSync(local, { recursive: true, force: true });
    });

    it('refuses wrong credentials with a clear error that keeps the password out', async () => {
      writeFileSync(path.join(run.hostDir, 'x.txt'), 'x');
      const backend = new FtpStorageBackend(settings);
      const attempt = backend.download(`ftp://tes:wrong-s3cret@127.0.0.1:${VSFTPD.port}/data/${run.name}/x.txt`, path.join(local, 'x.txt'));
      await expect(attempt).rejects.toBeInstanceOf(DomainError);
      const err = (await attempt.catch((e: DomainError) => e)) as DomainError;
      expect(err.code).toBe(ErrorCode.StorageDenied);
      expect(err.message).toMatch(/login as "tes" refused/);
      expect(err.message).not.toContain('wrong-s3cret');
    });

    it('takes credentials from settings by host when the URL has none', async () => {
      writeFileSync(path.join(run.hostDir, 'cfg.txt'), 'configured');
      const backend = new FtpStorageBackend({ ...settings, credentials: [`127.0.0.1:${VSFTPD.port}=${VSFTPD.user}:${VSFTPD.password}`] });
      await backend.download(`ftp://127.0.0.1:${VSFTPD.port}/data/${run.name}/cfg.txt`, path.join(local, 'cfg.txt'));
      expect(readFileSync(path.join(local, 'cfg.txt'), 'utf8')).toBe('configured');
      expect(backend.locations()).toEqual(['ftp://', `ftp://127.0.0.1:${VSFTPD.port}`]);
    });

    describe('through a proxy that cuts a data connection in the middle', () => {
      let proxy: FtpCuttingProxy;
      const size = 24 * 1024 * 1024 + 5;
      const data = Buffer.alloc(size);
      for (let i = 0; i < size; i++) data[i] = (i * 31 + (i >> 12)) % 251;

      beforeEach(async () => {
        proxy = await startFtpCuttingProxy(VSFTPD.port);
      });

      afterEach(async () => {
        await proxy.close();
      });

      const urlFor = (name: string) => `ftp://${VSFTPD.user}:${VSFTPD.password}@127.0.0.1:${proxy.port}/data/${run.name}/${name}`;

      it('resumes a download where the cut left it, and the bytes are right', async () => {
        writeFileSync(path.join(run.hostDir, 'big.bin'), data);
        const backend = new FtpStorageBackend(settings);
        const cutAt = 10 * 1024 * 1024;
        proxy.armCut(cutAt, 'to-client');
        const bytes = await backend.download(urlFor('big.bin'), path.join(local, 'big.bin'));
        expect(proxy.cuts()).toBe(1);
        expect(bytes).toBe(size);
        expect(sha256(readFileSync(path.join(local, 'big.bin')))).toBe(sha256(data));
        // Resumed with REST rather than fetched again from the start.
        expect(proxy.commands().filter((c) => /^REST [1-9]\d*$/.test(c))).toHaveLength(1);
        expect(proxy.moved('to-client')).toBeLessThan(cutAt + size);
      });

      it('starts a download over when the remote file changed between the cut and the retry', async () => {
        const remote = path.join(run.hostDir, 'changing.bin');
        writeFileSync(remote, data);
        const replaced = Buffer.concat([Buffer.from('a newer version: '), data.subarray(0, 20 * 1024 * 1024)]);
        const backend = new FtpStorageBackend(settings);
        proxy.armCut(10 * 1024 * 1024, 'to-client', () => writeFileSync(remote, replaced));
        await backend.download(urlFor('changing.bin'), path.join(local, 'changing.bin'));
        expect(proxy.cuts()).toBe(1);
        expect(sha256(readFileSync(path.join(local, 'changing.bin')))).toBe(sha256(replaced));
        expect(proxy.commands().filter((c) => /^REST [1-9]/.test(c))).toEqual([]);
      });

      it('resumes an upload with APPE after the cut, stores the right bytes and hashes the whole file', async () => {
        writeFileSync(path.join(local, 'up.bin'), data);
        const backend = new FtpStorageBackend(settings);
        const cutAt = 10 * 1024 * 1024;
        proxy.armCut(cutAt, 'to-server');
        const sent = await backend.upload(path.join(local, 'up.bin'), urlFor('out/up.bin'));
        expect(proxy.cuts()).toBe(1);
        expect(sent).toEqual({ bytes: size, sha256: sha256(data) });
        expect(sha256(readFileSync(path.join(run.hostDir, 'out', 'up.bin')))).toBe(sha256(data));
        expect(proxy.commands().filter((c) => /^(STOR|APPE) /.test(c))).toEqual(['STOR up.bin', 'APPE up.bin']);
        expect(proxy.moved('to-server')).toBeLessThan(cutAt + size);
        expect(proxy.commands()).toContain('PASS ***');
      });
    });

    it('refuses malformed storage.ftp.credentials entries at start-up, naming the host but not the password', () => {
      const build = (entry: string) => () => new FtpStorageBackend({ ...settings, credentials: [entry] });
      expect(build('127.0.0.1:2121 tes:pw-one')).toThrow(/^storage\.ftp\.credentials\[0\] is not host\[:port\]=value$/);
      expect(build('ftp.example.org=pw-two')).toThrow(/^storage\.ftp\.credentials: the entry for "ftp\.example\.org" is not host\[:port\]=user:password$/);
      expect(build('ftp://ftp.example.org=tes:pw-three')).toThrow(/^storage\.ftp\.credentials: "ftp:\/\/ftp\.example\.org" is not host or host:port$/);
      expect(() => new FtpStorageBackend({ ...settings, credentials: ['a.org=u:p1', 'A.org=u:p2'] })).toThrow(/^storage\.ftp\.credentials: "A\.org" is given twice$/);
      for (const entry of ['127.0.0.1:2121 tes:pw-one', 'ftp.example.org=pw-two', 'ftp://ftp.example.org=tes:pw-three']) {
        expect(build(entry)).toThrow(/^(?!.*pw-)/);
      }
    });

    it('lists a directory recursively and tells files from directories', async () => {
      mkdirSync(path.join(run.hostDir, 'tree/sub'), { recursive: true });
      writeFileSync(path.join(run.hostDir, 'tree/a.txt'), 'A');
      writeFileSync(path.join(run.hostDir, 'tree/sub/b c.txt'), 'BB');
      const backend = new FtpStorageBackend(settings);
      const base = `ftp://tes:tespass@127.0.0.1:${VSFTPD.port}/data/${run.name}/tree`;
      expect(await backend.stat(base)).toEqual({ type: 'DIRECTORY' });
      expect(await backend.list(base)).toEqual([
        { url: `${base}/a.txt`, relativePath: 'a.txt', size: 1 },
        { url: `${base}/sub/b%20c.txt`, relativePath: 'sub/b c.txt', size: 2 },
      ]);
    });
  });
});

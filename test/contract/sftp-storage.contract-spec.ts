// The SFTP backend against a real OpenSSH server started for this file (test/support/sshd.ts).
import { mkdirSync, promises as fs, rmSync } from 'node:fs';
import * as path from 'node:path';
import { SftpStorageBackend } from '../../src/storage/sftp/sftp-storage.backend';
import { describeWhen } from '../support/service-check';
import { Sshd, sshdAvailable, startSshd } from '../support/sshd';
import { describeStorageBackendContract } from './storage-backend.contract';

describeWhen('SFTP storage against OpenSSH', sshdAvailable(), 'no /usr/sbin/sshd (install openssh-server)', () => {
  let sshd: Sshd;

  beforeAll(async () => {
    sshd = await startSshd();
  });

  afterAll(async () => {
    await sshd?.stop();
  });

  let run = 0;
  describeStorageBackendContract('sftp', async () => {
    const root = path.join(sshd.dataDir, `contract-${++run}`);
    mkdirSync(root, { recursive: true });
    const backend = new SftpStorageBackend(
      {
        hosts: [`127.0.0.1:${sshd.port}=${sshd.user};key_file=${sshd.key.file}`],
        known_hosts: sshd.knownHosts,
        trust_unknown_hosts: false,
        timeout_ms: 10_000,
        retries: 2,
        retry_base_ms: 20,
        retry_max_ms: 200,
        parallel_requests: 8,
      },
      { partBytes: 1024 * 1024, parallel: 4 },
    );
    return {
      backend,
      urlFor: (rel) => `sftp://127.0.0.1:${sshd.port}${root}/${rel}`,
      seed: async (rel, data) => {
        mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
        await fs.writeFile(path.join(root, rel), data);
      },
      read: (rel) => fs.readFile(path.join(root, rel)),
      cleanup: async () => rmSync(root, { recursive: true, force: true }),
    };
  });
});

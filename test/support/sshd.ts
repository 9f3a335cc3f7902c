// A real OpenSSH server for one test file: its own config, host key, authorised user keys and known_hosts in a
// temporary directory, bound to 127.0.0.1 on a free port, serving SFTP with internal-sftp. The login user is the
// one running the tests (root under CI, hence PermitRootLogin prohibit-password); password logins are off.
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, Socket } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

const SSHD = '/usr/sbin/sshd';

export function sshdAvailable(): boolean {
  return existsSync(SSHD) && existsSync('/usr/bin/ssh-keygen');
}

export interface SshdKey {
  /** Path of the private key file (OpenSSH format). */
  file: string;
  /** The passphrase it is encrypted with, if any. */
  passphrase?: string;
}

export interface Sshd {
  port: number;
  /** The login user (the current user). */
  user: string;
  /** The temporary directory holding the server's files; tests may use its `data/` directory as storage. */
  dir: string;
  /** An absolute directory the user may read and write, for the test's files. */
  dataDir: string;
  /** An authorised ed25519 key without passphrase. */
  key: SshdKey;
  /** An authorised ed25519 key encrypted with a passphrase. */
  encryptedKey: SshdKey;
  /** A key the server does not accept. */
  strangerKey: SshdKey;
  /** The server's host public key line ("ssh-ed25519 AAAA..."). */
  hostKeyLine: string;
  /** A known_hosts file naming 127.0.0.1 with the server's key on every port (a cutting proxy's too). */
  knownHosts: string;
  /** Writes a known_hosts file with `lines` and returns its path. */
  writeKnownHosts(name: string, lines: string[]): string;
  /** Writes `text` to a file in the server's directory (a passphrase file) and returns its path. */
  writeFile(name: string, text: string): string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function keygen(file: string, passphrase = ''): string {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', passphrase, '-C', 'tesp-test', '-f', file], { stdio: 'ignore' });
  return readFileSync(`${file}.pub`, 'utf8').trim();
}

/** Waits until the server answers with its SSH banner (sshd -D listens once it has read its config). */
async function waitForBanner(port: number, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`sshd exited with ${child.exitCode}: ${log()}`);
    const banner = await new Promise<string>((resolve) => {
      const socket: Socket = connect(port, '127.0.0.1');
      socket.once('data', (chunk: Buffer) => {
        socket.destroy();
        resolve(chunk.toString('latin1'));
      });
      socket.once('error', () => resolve(''));
    });
    if (banner.startsWith('SSH-')) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`sshd did not answer on 127.0.0.1:${port}: ${log()}`);
}

export async function startSshd(): Promise<Sshd> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tesp-sshd-'));
  const user = os.userInfo().username;
  // sshd's privilege separation wants this directory to exist.
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const hostKeyFile = path.join(dir, 'ssh_host_ed25519_key');
  const hostKeyLine = keygen(hostKeyFile).split(' ').slice(0, 2).join(' ');
  const key: SshdKey = { file: path.join(dir, 'id_plain') };
  const encryptedKey: SshdKey = { file: path.join(dir, 'id_encrypted'), passphrase: 'correct horse battery' };
  const strangerKey: SshdKey = { file: path.join(dir, 'id_stranger') };
  const authorized = [keygen(key.file), keygen(encryptedKey.file, encryptedKey.passphrase)];
  keygen(strangerKey.file);
  writeFileSync(path.join(dir, 'authorized_keys'), `${authorized.join('\n')}\n`, { mode: 0o600 });
  const dataDir = path.join(dir, 'data');
  mkdirSync(dataDir);
  const port = await freePort();
  const config = path.join(dir, 'sshd_config');
  writeFileSync(
    config,
    [
      `ListenAddress 127.0.0.1:${port}`,
      `HostKey ${hostKeyFile}`,
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
      'StrictModes no',
      'UsePAM no',
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes',
      `AllowUsers ${user}`,
      'Subsystem sftp internal-sftp',
      'LogLevel VERBOSE',
      // The cutting proxy's resets and the tests' parallel connections must not look like an attack.
      'MaxStartups 100',
      'MaxSessions 100',
      'PerSourcePenalties no',
      '',
    ].join('\n'),
  );
  const flags = ['-D', '-e', '-f', config, '-p', String(port)];
  // PerSourcePenalties exists from OpenSSH 9.8 on; an older sshd refuses the line, so drop it there.
  try {
    execFileSync(SSHD, ['-t', ...flags.slice(2)], { stdio: 'pipe' });
  } catch {
    writeFileSync(config, readFileSync(config, 'utf8').replace('PerSourcePenalties no\n', ''));
  }
  let log = '';
  const child = spawn(SSHD, flags, { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.on('data', (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-20_000);
  });
  await waitForBanner(port, child, () => log);
  const writeFile = (name: string, text: string) => {
    const file = path.join(dir, name);
    writeFileSync(file, text, { mode: 0o600 });
    return file;
  };
  const writeKnownHosts = (name: string, lines: string[]) => writeFile(name, `${lines.join('\n')}\n`);
  return {
    port,
    user,
    dir,
    dataDir,
    key,
    encryptedKey,
    strangerKey,
    hostKeyLine,
    knownHosts: writeKnownHosts('known_hosts', [`127.0.0.1,[127.0.0.1]:* ${hostKeyLine}`]),
    writeKnownHosts,
    writeFile,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      // Connection processes share the log pipe and may outlive the listener by a moment: stop reading it.
      child.stderr?.destroy();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

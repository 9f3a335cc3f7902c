// Suites that need a real service: run when it answers; otherwise skip with the reason, or fail under CI=true.
import { execFileSync } from 'node:child_process';

/** Marks a skipped suite's name; the summary reporter looks for it. */
export const SKIP_MARK = '(skipped: ';

export function describeWhen(name: string, available: boolean, missing: string, body: () => void): void {
  if (available) {
    describe(name, body);
    return;
  }
  if (process.env.CI === 'true') {
    describe(name, () => {
      it('needs its service', () => {
        throw new Error(`CI=true but ${missing}`);
      });
    });
    return;
  }
  // The reason goes into the suite's name: jest shows no console output of a file whose tests all skip, but the
  // summary reporter (test/support/summary-reporter.js) lists every skipped suite with its name.
  process.stderr.write(`skipping "${name}": ${missing}\n`);
  describe.skip(`${name} ${SKIP_MARK}${missing})`, body);
}

export function tcpOpen(port: number): boolean {
  try {
    execFileSync('bash', ['-c', `exec 3<>/dev/tcp/127.0.0.1/${port}`], { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

/** The vsftpd that docker/start-vsftpd.sh starts: its directory, port and test user. */
export const VSFTPD = { dir: '/tmp/tesp-vsftpd', port: 2121, user: 'tes', password: 'tespass' };

export function vsftpdAvailable(): boolean {
  return tcpOpen(VSFTPD.port);
}

/** The Ceph RGW that docker/start-ceph-rgw.sh starts. */
export const RGW = { endpoint: 'http://127.0.0.1:7480', port: 7480, accessKeyId: 'TESACCESSKEY', secretAccessKey: 'TESSECRETKEY', region: 'us-east-1' };

export function rgwAvailable(): boolean {
  return tcpOpen(RGW.port);
}

/**
 * For peers that cannot run on our machines (a real Pulsar, a real mongod): runs when `variable` points at one,
 * and otherwise skips saying so, under CI=true too (CI has no such peer to offer).
 */
export function describeWhenConfigured(name: string, variable: string, what: string, body: (value: string) => void): void {
  const value = process.env[variable];
  if (value) {
    describe(name, () => body(value));
    return;
  }
  const missing = `${variable} is not set (point it at ${what})`;
  process.stderr.write(`skipping "${name}": ${missing}\n`);
  describe.skip(`${name} ${SKIP_MARK}${missing})`, () => body(''));
}

/** The one-node Slurm that docker/start-slurm.sh starts: its controller answers and its node takes jobs. */
export function slurmAvailable(): boolean {
  try {
    const ping = execFileSync('scontrol', ['ping'], { encoding: 'utf8', timeout: 10_000 });
    const node = execFileSync('sinfo', ['-h', '-o', '%T'], { encoding: 'utf8', timeout: 10_000 });
    return /is UP/.test(ping) && /idle|mixed|allocated|completing/.test(node);
  } catch {
    return false;
  }
}

export const SLURM_MISSING = 'no Slurm controller with a ready node answers (run docker/start-slurm.sh)';

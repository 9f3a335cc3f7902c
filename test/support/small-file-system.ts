// Small tmpfs file systems for fault tests (a full disk, a read-only data directory). Mounting needs root (or
// CAP_SYS_ADMIN); the probe tells a suite whether it can, and why not.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmdirSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** Why tmpfs cannot be mounted here, or undefined when it can (tried on a throw-away directory). */
export function tmpfsUnavailable(): string | undefined {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tesp-mount-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { stdio: 'pipe', timeout: 10_000 });
    execFileSync('umount', [dir], { stdio: 'pipe', timeout: 10_000 });
    return undefined;
  } catch (err) {
    return `cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`;
  } finally {
    rmdirSync(dir);
  }
}

/** Mounts a tmpfs of `sizeKb` at `dir` (made if missing); read-only when asked. */
export function mountTmpfs(dir: string, sizeKb: number, options: { readOnly?: boolean } = {}): void {
  const flags = [`size=${sizeKb}k`, ...(options.readOnly ? ['ro'] : [])].join(',');
  execFileSync('mount', ['-t', 'tmpfs', '-o', flags, 'tmpfs', dir], { stdio: 'pipe', timeout: 10_000 });
}

/** Unmounts `dir` if something is mounted there (lazily, should a process still hold a file in it). */
export function unmount(dir: string): void {
  try {
    execFileSync('mountpoint', ['-q', dir], { stdio: 'ignore' });
  } catch {
    return;
  }
  execFileSync('umount', ['-l', dir], { stdio: 'pipe', timeout: 10_000 });
}

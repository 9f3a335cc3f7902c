import { constants, promises as fs, Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { DomainError, ErrorCode } from '../domain/domain-error';

// Paths inside a task's root directory, resolved the way the container sees them: an absolute link target
// starts at the root, '..' stops there, so nothing the task writes (a link to /etc/shadow, say) leads tesp, which
// may run as root, to a host file outside the root.

/** Symlinks followed while resolving one path, as Linux allows (ELOOP past it). */
const MAX_LINK_HOPS = 40;

export interface Resolved {
  /** The container path with every symbolic link resolved. */
  containerPath: string;
  /** Its host path, always inside the root directory. */
  hostPath: string;
  stats: Stats;
}

/**
 * Resolves `containerPath` inside `rootDir` as the container would: undefined when it does not exist (or a link
 * dangles); a DomainError for a link loop.
 */
export async function resolveInRoot(rootDir: string, containerPath: string): Promise<Resolved | undefined> {
  const resolved: string[] = [];
  const pending = containerPath.split('/').filter(Boolean);
  let hops = 0;
  while (pending.length > 0) {
    const name = pending.shift()!;
    if (name === '.') continue;
    if (name === '..') {
      resolved.pop();
      continue;
    }
    const host = path.join(rootDir, ...resolved, name);
    const stats = await fs.lstat(host).catch(missing);
    if (!stats) return undefined;
    if (stats.isSymbolicLink()) {
      if (++hops > MAX_LINK_HOPS) {
        throw new DomainError(ErrorCode.StorageFailed, `${containerPath}: too many levels of symbolic links`);
      }
      const target = await fs.readlink(host);
      if (target.startsWith('/')) resolved.length = 0;
      pending.unshift(...target.split('/').filter(Boolean));
      continue;
    }
    if (pending.length > 0 && !stats.isDirectory()) return undefined;
    resolved.push(name);
  }
  const host = path.join(rootDir, ...resolved);
  const stats = await fs.stat(host).catch(missing);
  return stats && { containerPath: '/' + resolved.join('/'), hostPath: host, stats };
}

function missing(err: NodeJS.ErrnoException): undefined {
  if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
  throw err;
}

/**
 * Opens the file behind an executor's stdin: links followed as the container sees them, the file itself opened
 * without following a link, and checked once open to be inside the root (a link swapped in meanwhile is caught).
 */
export async function openInRootForReading(rootDir: string, containerPath: string): Promise<FileHandle> {
  const found = await resolveInRoot(rootDir, containerPath);
  if (!found) throw stdioProblem(containerPath, 'does not exist in the task');
  if (!found.stats.isFile()) throw stdioProblem(containerPath, 'is not a file');
  const handle = await fs.open(found.hostPath, constants.O_RDONLY | constants.O_NOFOLLOW).catch((err: NodeJS.ErrnoException) => {
    throw stdioProblem(containerPath, openFailure(err));
  });
  return confined(rootDir, containerPath, handle);
}

/**
 * Opens (creating or truncating) the file an executor's stdout or stderr goes to. Its directory is resolved in the
 * root as the container sees it; the file itself is never a link (tesp would write wherever it points), and it is
 * truncated only after the open file is known to be inside the root.
 */
export async function openInRootForWriting(rootDir: string, containerPath: string): Promise<FileHandle> {
  const dir = path.posix.dirname(containerPath);
  const parent = await resolveInRoot(rootDir, dir);
  if (!parent?.stats.isDirectory()) throw stdioProblem(containerPath, `its directory ${dir} does not exist in the task`);
  const file = path.join(parent.hostPath, path.posix.basename(containerPath));
  const handle = await fs.open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW, 0o644).catch((err: NodeJS.ErrnoException) => {
    throw stdioProblem(containerPath, openFailure(err));
  });
  await confined(rootDir, containerPath, handle);
  await handle.truncate(0);
  return handle;
}

/**
 * Opens the directory at a container path to every uid (mode 0777), for executors that run as another user than
 * tesp: resolved as the container sees it, and changed only through a descriptor known to be inside the root, so a
 * link a task planted never makes tesp (perhaps root) open a host directory. Does nothing when it is no directory.
 */
/**
 * Creates the directory `containerPath` names inside `rootDir` and its missing parents, one name at a time through
 * directory handles opened without following links (`/proc/self/fd/<fd>/<name>`), so that a link the task planted
 * on the way ends the walk instead of making tesp create a directory outside the root.
 */
export async function makeDirInRoot(rootDir: string, containerPath: string): Promise<void> {
  const names = path.posix.normalize(containerPath).split('/').filter((name) => name !== '' && name !== '.');
  if (names.includes('..')) throw new DomainError(ErrorCode.InvalidArgument, `container path "${containerPath}" must not contain ".."`);
  let dir = await fs.open(rootDir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    for (const name of names) {
      const at = `/proc/self/fd/${dir.fd}/${name}`;
      // mkdir does not follow a link in its last name: a planted link is EEXIST here and ELOOP below.
      await fs.mkdir(at).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
      const next = await fs.open(at, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
      await dir.close();
      dir = next;
    }
  } finally {
    await dir.close();
  }
}

export async function openToEveryUser(rootDir: string, containerPath: string): Promise<void> {
  const found = await resolveInRoot(rootDir, containerPath);
  if (!found?.stats.isDirectory()) return;
  const handle = await fs.open(found.hostPath, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW).catch(() => undefined);
  if (!handle) return;
  try {
    const [root, opened] = await Promise.all([fs.realpath(rootDir), fs.readlink(`/proc/self/fd/${handle.fd}`)]);
    if (opened.startsWith(root + path.sep)) await handle.chmod(0o777);
  } finally {
    await handle.close();
  }
}

async function confined(rootDir: string, containerPath: string, handle: FileHandle): Promise<FileHandle> {
  try {
    const [root, opened] = await Promise.all([fs.realpath(rootDir), fs.readlink(`/proc/self/fd/${handle.fd}`)]);
    if (opened !== root && !opened.startsWith(root + path.sep)) throw stdioProblem(containerPath, 'leads outside the task');
    if (!(await handle.stat()).isFile()) throw stdioProblem(containerPath, 'is not a file');
    return handle;
  } catch (err) {
    await handle.close();
    throw err;
  }
}

function openFailure(err: NodeJS.ErrnoException): string {
  if (err.code === 'ELOOP') return 'is a symbolic link (executor files are not opened through links)';
  if (err.code === 'EISDIR') return 'is a directory';
  return err.code ?? err.message;
}

function stdioProblem(containerPath: string, why: string): DomainError {
  return new DomainError(ErrorCode.InvalidArgument, `${containerPath} ${why}`);
}

import { promises as fs, Stats } from 'node:fs';
import * as path from 'node:path';
import fg from 'fast-glob';
import { DomainError, ErrorCode } from '../common/domain-error';
import type { PlanOutput } from '../compute/execution-plan';

// Which host files an output names. Outputs are written by the task, and so are any symbolic links among them:
// a link is resolved the way the container sees it (absolute targets start at the task's root directory, '..'
// stops there), never the way the host would, so a link such as /out/x -> /etc/shadow cannot make the server
// upload a host file, and a link to an input (/out/x -> /in/x) finds that input.

/** A file to upload: where it is on the host, the container path it is reported under, and its target URL. */
export interface OutputFile {
  hostPath: string;
  containerPath: string;
  url: string;
}

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
  const hostPath = path.join(rootDir, ...resolved);
  const stats = await fs.stat(hostPath).catch(missing);
  return stats && { containerPath: '/' + resolved.join('/'), hostPath, stats };
}

/** The files an output names (one for a FILE, every file below a DIRECTORY, every match of a glob). */
export async function outputFiles(rootDir: string, output: PlanOutput, log: (message: string) => void): Promise<OutputFile[]> {
  const label = `outputs[${output.index}]`;
  if (output.glob) return globFiles(rootDir, output, output.glob, log);
  const found = await resolveInRoot(rootDir, output.containerPath);
  if (!found) throw new DomainError(ErrorCode.StorageFailed, `${output.containerPath} does not exist`);
  if (output.type === 'FILE') {
    if (!found.stats.isFile()) throw new DomainError(ErrorCode.StorageFailed, `${output.containerPath} is not a file`);
    return [{ hostPath: found.hostPath, containerPath: output.containerPath, url: output.url }];
  }
  if (!found.stats.isDirectory()) throw new DomainError(ErrorCode.StorageFailed, `${output.containerPath} is not a directory`);
  const files: OutputFile[] = [];
  // `ancestors` holds the resolved directories on the way down, so a link back up is noticed, not walked forever.
  const walk = async (dir: Resolved, rel: string, ancestors: Set<string>): Promise<void> => {
    const entries = await fs.readdir(dir.hostPath, { withFileTypes: true });
    for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const relPath = rel ? `${rel}/${entry.name}` : entry.name;
      const shown = path.posix.join(output.containerPath, relPath);
      let target: Resolved | undefined;
      if (entry.isSymbolicLink()) {
        target = await resolveInRoot(rootDir, path.posix.join(dir.containerPath, entry.name)).catch(() => undefined);
        if (!target) {
          log(`${label}: ${shown} is a symbolic link that leads nowhere inside the task; skipped`);
          continue;
        }
      } else if (entry.isFile() || entry.isDirectory()) {
        const hostPath = path.join(dir.hostPath, entry.name);
        target = { containerPath: path.posix.join(dir.containerPath, entry.name), hostPath, stats: await fs.stat(hostPath) };
      } else {
        continue; // sockets, fifos and devices are not files to upload
      }
      if (target.stats.isFile()) {
        files.push({ hostPath: target.hostPath, containerPath: shown, url: joinUrl(output.url, relPath) });
      } else if (target.stats.isDirectory()) {
        if (ancestors.has(target.containerPath)) {
          log(`${label}: ${shown} links back to ${target.containerPath}; not followed`);
          continue;
        }
        await walk(target, relPath, new Set(ancestors).add(target.containerPath));
      }
    }
  };
  await walk(found, '', new Set([found.containerPath]));
  return files;
}

async function globFiles(rootDir: string, output: PlanOutput, glob: NonNullable<PlanOutput['glob']>, log: (message: string) => void): Promise<OutputFile[]> {
  const { hostPrefix, containerPrefix, hostPattern } = glob;
  // fast-glob does not descend into linked directories here (they are host links); matched links are resolved
  // below in the container's view.
  const matches = await fg(fg.escapePath(hostPrefix) + hostPattern.slice(hostPrefix.length), {
    dot: true,
    onlyFiles: false,
    followSymbolicLinks: false,
    absolute: true,
  });
  const files: OutputFile[] = [];
  for (const match of matches.sort()) {
    const containerPath = '/' + path.relative(rootDir, match).split(path.sep).join('/');
    const found = await resolveInRoot(rootDir, containerPath).catch(() => undefined);
    if (!found?.stats.isFile()) continue; // directories are not matched; dangling links have nothing to upload
    const rel = path.posix.relative(containerPrefix, containerPath);
    files.push({ hostPath: found.hostPath, containerPath, url: joinUrl(output.url, rel) });
  }
  if (files.length === 0) log(`outputs[${output.index}]: ${output.containerPath} matched no files`);
  return files;
}

/** Appends a relative path to a directory URL or path; http(s) segments are percent-encoded. */
export function joinUrl(base: string, relative: string): string {
  const http = /^https?:/i.test(base);
  const rel = relative.split('/').map((segment) => (http ? encodeURIComponent(segment) : segment)).join('/');
  return `${base.replace(/\/+$/, '')}/${rel}`;
}

function missing(err: NodeJS.ErrnoException): undefined {
  if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
  throw err;
}

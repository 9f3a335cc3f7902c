import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import fg from 'fast-glob';
import { DomainError, ErrorCode } from '../domain/domain-error';
import { hostPath, PlanOutput } from './execution-plan';
import { Resolved, resolveInRoot } from './task-root';

// Which host files an output names. Outputs are written by the task, and so are any symbolic links among them:
// links are resolved the way the container sees them (task-root.ts), so a link such as /out/x -> /etc/shadow
// cannot make the server upload a host file, and a link to an input (/out/x -> /in/x) finds that input.

/** A file to upload: where it is on the host, the container path it is reported under, and its target URL. */
export interface OutputFile {
  hostPath: string;
  containerPath: string;
  url: string;
}

/** The files an output names (one for a FILE, every file below a DIRECTORY, every match of a glob). */
export async function outputFiles(rootDir: string, output: PlanOutput, log: (message: string) => void): Promise<OutputFile[]> {
  const label = `outputs[${output.index}]`;
  if (output.glob) return globFiles(rootDir, output, output.glob.prefix, log);
  const found = await resolveInRoot(rootDir, output.path);
  if (!found) throw new DomainError(ErrorCode.StorageFailed, `${output.path} does not exist`);
  if (output.type === 'FILE') {
    if (!found.stats.isFile()) throw new DomainError(ErrorCode.StorageFailed, `${output.path} is not a file`);
    return [{ hostPath: found.hostPath, containerPath: output.path, url: output.url }];
  }
  if (!found.stats.isDirectory()) throw new DomainError(ErrorCode.StorageFailed, `${output.path} is not a directory`);
  const files: OutputFile[] = [];
  // `ancestors` holds the resolved directories on the way down, so a link back up is noticed, not walked forever.
  const walk = async (dir: Resolved, rel: string, ancestors: Set<string>): Promise<void> => {
    const entries = await fs.readdir(dir.hostPath, { withFileTypes: true });
    for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const relPath = rel ? `${rel}/${entry.name}` : entry.name;
      const shown = path.posix.join(output.path, relPath);
      let target: Resolved | undefined;
      if (entry.isSymbolicLink()) {
        target = await resolveInRoot(rootDir, path.posix.join(dir.containerPath, entry.name)).catch(() => undefined);
        if (!target) {
          log(`${label}: ${shown} is a symbolic link that leads nowhere inside the task; skipped`);
          continue;
        }
      } else if (entry.isFile() || entry.isDirectory()) {
        const host = path.join(dir.hostPath, entry.name);
        target = { containerPath: path.posix.join(dir.containerPath, entry.name), hostPath: host, stats: await fs.stat(host) };
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

async function globFiles(rootDir: string, output: PlanOutput, containerPrefix: string, log: (message: string) => void): Promise<OutputFile[]> {
  const hostPrefix = hostPath(rootDir, containerPrefix);
  const hostPattern = hostPath(rootDir, output.path);
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
  if (files.length === 0) log(`outputs[${output.index}]: ${output.path} matched no files`);
  return files;
}

/** Appends a relative path to a directory URL or path; http(s) segments are percent-encoded. */
export function joinUrl(base: string, relative: string): string {
  const http = /^https?:/i.test(base);
  const rel = relative.split('/').map((segment) => (http ? encodeURIComponent(segment) : segment)).join('/');
  return `${base.replace(/\/+$/, '')}/${rel}`;
}

/**
 * A matcher for an output glob over '/'-separated relative paths, as fast-glob reads it on a disk: `*` and `?`
 * within one segment, `**` across segments, `[...]` classes and `{a,b}` alternatives; dot files match too.
 */
export function globMatcher(pattern: string): (relativePath: string) => boolean {
  const re = new RegExp(`^${globSource(pattern)}$`);
  return (relativePath) => re.test(relativePath);
}

/** The regular expression (unanchored source) of an output glob, as globMatcher reads it. */
export function globSource(pattern: string): string {
  let source = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '*' && pattern[i + 1] === '*') {
      const slashAfter = pattern[i + 2] === '/';
      source += slashAfter ? '(?:.*/)?' : '.*';
      i += slashAfter ? 2 : 1;
    } else if (c === '*') source += '[^/]*';
    else if (c === '?') source += '[^/]';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end === -1) source += '\\[';
      else {
        const body = pattern.slice(i + 1, end).replace(/\\/g, '\\\\');
        source += `[${body.startsWith('!') ? '^' + body.slice(1) : body}]`;
        i = end;
      }
    } else if (c === '{') {
      const end = pattern.indexOf('}', i + 1);
      if (end === -1) source += '\\{';
      else {
        source += `(?:${pattern.slice(i + 1, end).split(',').map((alt) => alt.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})`;
        i = end;
      }
    } else source += c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  return source;
}

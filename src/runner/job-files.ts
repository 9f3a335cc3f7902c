import { constants, promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';

// Where Pulsar's file `type`s live in a job directory (pulsar-protocol reference §4), and how names are turned into
// paths that stay inside it. The job directory is a host directory whose links are made by host processes (the job
// script links inputs in by host path), so links are followed as the host sees them, but never out of the job
// directory: anything that leads outside is refused.

/** A job directory's sub-directories, created by setup. */
export const JOB_SUBDIRECTORIES = ['inputs', 'working', 'outputs', 'configs', 'tool_files', 'metadata', 'unstructured'] as const;

interface Placement {
  /** Relative to the job directory; '' is the job directory itself. */
  dir: string;
  /** Whether a name keeps its sub-directories (a/b/c) or only its basename. */
  nested: boolean;
}

/** Upload and `files/path` placements. */
const UPLOAD_PLACEMENTS: Readonly<Record<string, Placement>> = {
  input: { dir: 'inputs', nested: true },
  unstructured: { dir: 'unstructured', nested: true },
  config: { dir: 'configs', nested: false },
  tool: { dir: 'tool_files', nested: true },
  jobdir: { dir: '', nested: false },
  workdir: { dir: 'working', nested: false },
  metadata: { dir: 'metadata', nested: true },
  output: { dir: 'outputs', nested: true },
  output_workdir: { dir: 'working', nested: true },
  output_metadata: { dir: 'metadata', nested: true },
  output_jobdir: { dir: '', nested: false },
};

/** A name or type the runner refuses (answered 400: a client mistake, not a server fault). */
export class FileNameError extends Error {}

/** Where an upload of `type` goes; unknown types are refused. */
export function uploadPlacement(type: string): Placement {
  const placement = Object.hasOwn(UPLOAD_PLACEMENTS, type) ? UPLOAD_PLACEMENTS[type] : undefined;
  if (!placement) throw new FileNameError(`unknown file type "${type}" (known: ${Object.keys(UPLOAD_PLACEMENTS).join(', ')})`);
  return placement;
}

/** Downloads tell only output_workdir and output_metadata apart; every other type reads outputs/ (as Pulsar does). */
export function downloadPlacement(type: string): Placement {
  if (type === 'output_workdir') return UPLOAD_PLACEMENTS.output_workdir;
  if (type === 'output_metadata') return UPLOAD_PLACEMENTS.output_metadata;
  return UPLOAD_PLACEMENTS.output;
}

/** `files/path`: the download mapping for output types, the upload table for the others. */
export function pathPlacement(type: string): Placement {
  return type === 'output' || type === 'output_workdir' || type === 'output_metadata' ? downloadPlacement(type) : uploadPlacement(type);
}

/** The name's path relative to the job directory (POSIX separators); refuses anything that could leave its directory. */
export function relativePath(placement: Placement, name: string): string {
  if (name.includes('\0')) throw new FileNameError('a file name must not contain NUL');
  if (name.startsWith('/')) throw new FileNameError(`the file name "${name}" is absolute`);
  const parts = name.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) throw new FileNameError(`the file name "${name}" leads outside its directory`);
  const kept = placement.nested ? parts : parts.slice(-1);
  if (kept.length === 0) throw new FileNameError(`the file name "${name}" names no file`);
  return path.posix.join(placement.dir, ...kept);
}

/**
 * Creates the directories of `relativeDir` below `jobDir`, one at a time, refusing a symbolic link or a non-directory
 * on the way: `mkdir -p` would follow a link the job made and create directories wherever it points.
 */
export async function makeDirectoriesInside(jobDir: string, relativeDir: string): Promise<void> {
  let current = jobDir;
  for (const part of relativeDir.split('/').filter(Boolean)) {
    current = path.join(current, part);
    let stats = await fs.lstat(current).catch(() => undefined);
    if (!stats) {
      await fs.mkdir(current).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
      stats = await fs.lstat(current);
    }
    if (stats.isSymbolicLink()) throw new FileNameError(`${path.relative(jobDir, current)} is a symbolic link; files are not written through links`);
    if (!stats.isDirectory()) throw new FileNameError(`${path.relative(jobDir, current)} is not a directory`);
  }
}

/** Opens (creating, then truncating) a file below the job directory for writing; never through a link. */
export async function openForWritingInside(jobDir: string, relative: string): Promise<FileHandle> {
  await makeDirectoriesInside(jobDir, path.posix.dirname(relative));
  const file = path.join(jobDir, relative);
  const handle = await fs.open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW, 0o644).catch((err: NodeJS.ErrnoException) => {
    throw err.code === 'ELOOP' ? new FileNameError(`${relative} is a symbolic link; files are not written through links`) : err;
  });
  await checkedInside(jobDir, relative, handle);
  await handle.truncate(0);
  return handle;
}

/**
 * Opens a regular file below the job directory for reading: links are followed as the host sees them but must end
 * inside the job directory; the open file is checked once more, so a link swapped in meanwhile is caught.
 * Undefined when there is no such file.
 */
export async function openForReadingInside(jobDir: string, relative: string): Promise<FileHandle | undefined> {
  const real = await fs.realpath(path.join(jobDir, relative)).catch(() => undefined);
  if (!real || !isInside(await fs.realpath(jobDir), real)) return undefined;
  const handle = await fs.open(real, constants.O_RDONLY | constants.O_NOFOLLOW).catch(() => undefined);
  if (!handle) return undefined;
  try {
    await checkedInside(jobDir, relative, handle);
    return handle;
  } catch {
    await handle.close();
    return undefined;
  }
}

async function checkedInside(jobDir: string, relative: string, handle: FileHandle): Promise<void> {
  try {
    const [root, opened, stats] = await Promise.all([fs.realpath(jobDir), fs.readlink(`/proc/self/fd/${handle.fd}`), handle.stat()]);
    if (!isInside(root, opened)) throw new FileNameError(`${relative} leads outside the job directory`);
    if (!stats.isFile()) throw new FileNameError(`${relative} is not a file`);
  } catch (err) {
    await handle.close();
    throw err;
  }
}

function isInside(root: string, candidate: string): boolean {
  return candidate.startsWith(root + path.sep);
}

/** Relative paths of the files below `dir` (links listed, not followed), at most `limit` of them. */
export async function listFiles(dir: string, recursive: boolean, limit = 10_000): Promise<string[]> {
  const found: string[] = [];
  const walk = async (current: string, prefix: string): Promise<void> => {
    const entries = await fs.readdir(current, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      if (found.length >= limit) return;
      const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
      if (entry.isDirectory() && recursive) await walk(path.join(current, entry.name), rel);
      else found.push(rel);
    }
  };
  await walk(dir, '');
  return found;
}

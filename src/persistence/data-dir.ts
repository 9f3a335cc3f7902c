import { accessSync, constants, mkdirSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { errorMessage } from '../common/redact';

/** What is at a path: nothing, a directory, or something else (a file, a socket, ...); other failures throw. */
export function pathKind(at: string): 'missing' | 'directory' | 'other' {
  try {
    return statSync(at).isDirectory() ? 'directory' : 'other';
  } catch (err) {
    // ENOTDIR: a parent is a file; creating the directory will fail and say so.
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return 'missing';
    throw err;
  }
}

/**
 * Makes sure data_dir is a directory tesp can write in, creating it (and missing parents) when absent. Throws a
 * message naming data_dir, the path and what is wrong, instead of the store's "unable to open database file".
 */
export function prepareDataDir(dir: string): void {
  const attempt = <T>(what: string, work: () => T): T => {
    try {
      return work();
    } catch (err) {
      throw new Error(`data_dir ${dir} ${what}: ${errorMessage(err)}`);
    }
  };
  const kind = attempt('cannot be read', () => pathKind(dir));
  if (kind === 'other') throw new Error(`data_dir ${dir} is not a directory (a file or something else is at that path)`);
  if (kind === 'missing') {
    attempt('does not exist and cannot be created', () => {
      try {
        mkdirSync(dir, { recursive: true });
      } catch (err) {
        // A recursive mkdir on a read-only file system says ENOENT: the ancestor that exists tells the truth.
        const ancestor = existingAncestor(dir);
        if (ancestor) accessSync(ancestor, constants.W_OK);
        throw err;
      }
    });
  }
  // access(2) honours read-only mounts even for root, whom permission bits do not stop.
  attempt('is not writable', () => accessSync(dir, constants.W_OK | constants.X_OK));
}

/** The nearest ancestor of `dir` that exists and is a directory, if any. */
function existingAncestor(dir: string): string | undefined {
  for (let at = path.dirname(dir); ; at = path.dirname(at)) {
    try {
      if (statSync(at).isDirectory()) return at;
    } catch {
      // not there either: one level up
    }
    if (at === path.dirname(at)) return undefined;
  }
}

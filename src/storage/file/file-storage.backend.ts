import { constants, createWriteStream, promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DomainError, ErrorCode } from '../../domain/domain-error';
import type { ListedObject, ObjectInfo, StorageBackend, TransferOptions, UploadStreamOptions } from '../storage-backend';
import { countedStream, hashedReadStream, UploadResult } from '../transfer/hashed-read';
import { SinglePassSource } from '../transfer/single-pass-source';

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_DIRECTORY, O_NONBLOCK } = constants;

/**
 * file:// URLs and plain absolute paths (as Nextflow and Cromwell send them), confined to allow-listed
 * directories. Paths are checked after resolving symlinks, so neither '..' nor a link can escape. Transfers never
 * check a path and then open it by name (a link swapped in between would win): they open first and check what
 * the descriptor refers to (/proc/self/fd, Linux), and create files inside a directory descriptor they checked.
 */
export class FileStorageBackend implements StorageBackend {
  readonly schemes = ['file'] as const;

  constructor(private readonly allowedDirs: readonly string[]) {}

  locations(): string[] {
    return this.allowedDirs.map((dir) => pathToFileURL(dir).toString());
  }

  /** Why a URL may not be used, or undefined when it may. Checks the allow-list without touching the file. */
  async problemWith(url: string): Promise<string | undefined> {
    try {
      await this.resolve(url);
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  }

  async stat(url: string): Promise<ObjectInfo> {
    const file = await this.resolve(url);
    const info = await fs.stat(file).catch((err) => this.fail(url, err));
    return { type: info.isDirectory() ? 'DIRECTORY' : 'FILE', size: info.isDirectory() ? undefined : info.size };
  }

  async list(url: string): Promise<ListedObject[]> {
    const root = await this.openChecked(url, await this.resolve(url), O_RDONLY | O_DIRECTORY);
    const base = url.replace(/\/+$/, '');
    const out: ListedObject[] = [];
    // `ancestors` holds the real directories on the way down: a link back up is skipped, not walked forever.
    const walk = async (dir: Opened, rel: string, ancestors: Set<string>): Promise<void> => {
      const entries = await fs.readdir(viaDescriptor(dir.handle)).catch((err) => this.fail(url, err));
      for (const name of entries.sort()) {
        const relPath = rel ? `${rel}/${name}` : name;
        // Opened through the checked directory, following links; refused when what it opened is outside.
        const child = await this.openChecked(`${base}/${relPath}`, viaDescriptor(dir.handle, name), O_RDONLY | O_NONBLOCK);
        try {
          const info = await child.handle.stat();
          if (info.isDirectory()) {
            if (!ancestors.has(child.real)) await walk(child, relPath, new Set(ancestors).add(child.real));
          } else if (info.isFile()) {
            out.push({ url: `${base}/${relPath}`, relativePath: relPath, size: info.size });
          }
        } finally {
          await child.handle.close();
        }
      }
    };
    try {
      await walk(root, '', new Set([root.real]));
    } finally {
      await root.handle.close();
    }
    return out;
  }

  async download(url: string, destination: string, options: TransferOptions = {}): Promise<number> {
    const input = await this.readStream(url, options.signal);
    let bytes = 0;
    input.on('data', (chunk) => {
      bytes += chunk.length;
      options.onProgress?.(chunk.length);
    });
    await pipeline(input, createWriteStream(destination), { signal: options.signal }).catch((err) => this.fail(url, err));
    return bytes;
  }

  async upload(source: string, url: string, options: TransferOptions = {}): Promise<UploadResult> {
    const input = hashedReadStream(source, { onBytes: options.onProgress });
    await this.writeFile(input.stream, url, options);
    return input.result();
  }

  async openRead(url: string, options: TransferOptions = {}): Promise<Readable> {
    return countedStream(await this.readStream(url, options.signal), options.onProgress);
  }

  /**
   * The file a URL names, opened once (so a missing file rejects now rather than as a stream error later) and
   * checked as opened. O_NONBLOCK: a FIFO swapped in cannot hang the open; it is then refused as not a file.
   */
  private async readStream(url: string, signal?: AbortSignal): Promise<Readable> {
    const { handle } = await this.openChecked(url, await this.resolve(url), O_RDONLY | O_NONBLOCK);
    const info = await handle.stat().catch(async (err) => {
      await handle.close();
      this.fail(url, err);
    });
    if (!info.isFile()) {
      await handle.close();
      throw new DomainError(ErrorCode.StorageFailed, `${url}: not a file`);
    }
    return handle.createReadStream({ signal });
  }

  async uploadStream(source: Readable, url: string, options: UploadStreamOptions = {}): Promise<UploadResult> {
    const input = new SinglePassSource(source, options.onProgress);
    try {
      await this.writeFile(input.attempt(), url, options, () => input.sizeMismatch(options.size, url));
    } catch (err) {
      input.discard();
      throw input.sourceError ?? err;
    }
    return input.result();
  }

  /**
   * Writes a stream to the file a URL names: beside the target first and renamed at the end, so readers never
   * see half a file and a failure leaves nothing. `beforeCommit` may still refuse the complete write.
   */
  private async writeFile(stream: Readable, url: string, options: TransferOptions, beforeCommit?: () => Error | undefined): Promise<void> {
    const target = await this.resolve(url);
    const name = path.basename(target);
    const dir = await this.directoryFor(url, path.dirname(target)).catch((err: unknown) => {
      stream.destroy();
      throw err;
    });
    const partial = `${name}.tesp-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}.part`;
    try {
      // Created in the checked directory; O_EXCL|O_NOFOLLOW: nothing already at the partial name is written through.
      const file = await fs.open(viaDescriptor(dir, partial), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o666);
      await pipeline(stream, file.createWriteStream(), { signal: options.signal });
      const refused = beforeCommit?.();
      if (refused) throw refused;
      // Within the same checked directory: a link at the final name is replaced, never written through.
      await fs.rename(viaDescriptor(dir, partial), viaDescriptor(dir, name));
    } catch (err) {
      stream.destroy();
      await fs.rm(viaDescriptor(dir, partial), { force: true });
      if (err instanceof DomainError) throw err;
      this.fail(url, err);
    } finally {
      await dir.close();
    }
  }

  /**
   * The directory `dir` opened as a descriptor, created as needed, walking from / one name at a time: each name
   * is opened through the descriptor of its parent (following links), and a directory is only ever created where
   * the checked parent puts it inside an allowed directory or on the way to one (an allowed directory not made yet).
   */
  private async directoryFor(url: string, dir: string): Promise<FileHandle> {
    const allowed = await this.allowedReal();
    let current = await fs.open('/', O_RDONLY | O_DIRECTORY);
    try {
      for (const part of dir.split('/').filter(Boolean)) {
        const next = viaDescriptor(current, part);
        // Where mkdir would create it: the checked real directory plus the name.
        const made = path.join(await fs.readlink(viaDescriptor(current)), part);
        if (isInside(made, allowed) || allowed.some((root) => root.startsWith(made + '/'))) {
          await fs.mkdir(next).catch((err: NodeJS.ErrnoException) => {
            if (err.code !== 'EEXIST') throw err;
          });
        }
        const child = await fs.open(next, O_RDONLY | O_DIRECTORY);
        await current.close();
        current = child;
      }
      if (!isInside(await fs.readlink(viaDescriptor(current)), allowed)) throw this.outside(url);
      return current;
    } catch (err) {
      await current.close();
      if (err instanceof DomainError) throw err;
      this.fail(url, err);
    }
  }

  /** Opens `file` (following links) and refuses it unless what was opened lies in the allowed directories. */
  private async openChecked(url: string, file: string, flags: number): Promise<Opened> {
    const handle = await fs.open(file, flags).catch((err) => this.fail(url, err));
    try {
      const real = await fs.readlink(viaDescriptor(handle));
      if (!isInside(real, await this.allowedReal())) throw this.outside(url);
      return { handle, real };
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  private async allowedReal(): Promise<string[]> {
    return Promise.all(this.allowedDirs.map((dir) => realpathOfNearest(path.resolve(dir))));
  }

  private outside(url: string): DomainError {
    return new DomainError(ErrorCode.StorageDenied, `${url} is outside the allowed directories (storage.file.allowed_dirs)`);
  }

  /** The host path for a URL, after checking it against the allow-list with symlinks resolved. */
  private async resolve(url: string): Promise<string> {
    let file: string;
    try {
      file = url.startsWith('file:') ? fileURLToPath(url) : url;
    } catch {
      throw new DomainError(ErrorCode.InvalidArgument, `${url} is not a valid file URL (use file:///absolute/path)`);
    }
    if (!path.isAbsolute(file)) throw new DomainError(ErrorCode.InvalidArgument, `${url} is not an absolute path`);
    const real = await realpathOfNearest(path.resolve(file));
    if (!isInside(real, await this.allowedReal())) throw this.outside(url);
    return real;
  }

  private fail(url: string, err: unknown): never {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file or directory' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new DomainError(ErrorCode.StorageFailed, `${url}: ${why}`);
  }
}

/** realpath of the path, or of its nearest existing ancestor joined with the rest (for files not yet written). */
async function realpathOfNearest(target: string): Promise<string> {
  const rest: string[] = [];
  let current = target;
  for (;;) {
    try {
      return path.join(await fs.realpath(current), ...rest.reverse());
    } catch {
      const parent = path.dirname(current);
      if (parent === current) return target;
      rest.push(path.basename(current));
      current = parent;
    }
  }
}

interface Opened {
  handle: FileHandle;
  /** What the descriptor refers to, links resolved. */
  real: string;
}

/** A path that reaches the object behind an open descriptor (and a name inside it) without resolving any path again. */
function viaDescriptor(handle: FileHandle, name?: string): string {
  return name === undefined ? `/proc/self/fd/${handle.fd}` : `/proc/self/fd/${handle.fd}/${name}`;
}

function isInside(real: string, allowed: readonly string[]): boolean {
  return allowed.some((dir) => real === dir || real.startsWith(dir.endsWith('/') ? dir : dir + '/'));
}

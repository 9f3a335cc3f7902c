import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DomainError, ErrorCode } from '../../domain/domain-error';
import type { ListedObject, ObjectInfo, StorageBackend, TransferOptions } from '../storage-backend';
import { hashedReadStream, UploadResult } from '../transfer/hashed-read';

/**
 * file:// URLs and plain absolute paths (as Nextflow and Cromwell send them), confined to allow-listed
 * directories. Paths are checked after resolving symlinks, so neither '..' nor a link can escape.
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
    const root = await this.resolve(url);
    const base = url.replace(/\/+$/, '');
    const out: ListedObject[] = [];
    // `ancestors` holds the real directories on the way down: a link back up is skipped, not walked forever.
    const walk = async (dir: string, rel: string, ancestors: Set<string>): Promise<void> => {
      const entries = await fs.readdir(dir).catch((err) => this.fail(url, err));
      for (const name of entries.sort()) {
        const full = path.join(dir, name);
        const relPath = rel ? `${rel}/${name}` : name;
        const real = await this.resolve(full); // follows links, refuses ones that leave the allowed directories
        const info = await fs.stat(real).catch((err) => this.fail(`${base}/${relPath}`, err));
        if (info.isDirectory()) {
          if (!ancestors.has(real)) await walk(real, relPath, new Set(ancestors).add(real));
        } else if (info.isFile()) {
          out.push({ url: `${base}/${relPath}`, relativePath: relPath, size: info.size });
        }
      }
    };
    await walk(root, '', new Set([root]));
    return out;
  }

  async download(url: string, destination: string, options: TransferOptions = {}): Promise<number> {
    const source = await this.resolve(url);
    let bytes = 0;
    const input = createReadStream(source);
    input.on('data', (chunk) => {
      bytes += chunk.length;
      options.onProgress?.(chunk.length);
    });
    await pipeline(input, createWriteStream(destination), { signal: options.signal }).catch((err) => this.fail(url, err));
    return bytes;
  }

  async upload(source: string, url: string, options: TransferOptions = {}): Promise<UploadResult> {
    const target = await this.resolve(url);
    await fs.mkdir(path.dirname(target), { recursive: true });
    // Write beside the target and rename, so readers never see half a file.
    const partial = `${target}.tesp-${process.pid}-${Date.now()}.part`;
    const input = hashedReadStream(source, { onBytes: options.onProgress });
    try {
      await pipeline(input.stream, createWriteStream(partial), { signal: options.signal });
      await fs.rename(partial, target);
    } catch (err) {
      await fs.rm(partial, { force: true });
      this.fail(url, err);
    }
    return input.result();
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
    const allowed = await Promise.all(this.allowedDirs.map((dir) => realpathOfNearest(path.resolve(dir))));
    if (!allowed.some((dir) => real === dir || real.startsWith(dir.endsWith('/') ? dir : dir + '/'))) {
      throw new DomainError(ErrorCode.StorageDenied, `${url} is outside the allowed directories (storage.file.allowed_dirs)`);
    }
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

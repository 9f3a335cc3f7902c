import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DomainError, ErrorCode } from '../../domain/domain-error';
import type { ListedObject, ObjectInfo, StorageBackend, TransferOptions, UploadStreamOptions } from '../storage-backend';
import { countedStream, hashedReadStream, UploadResult } from '../transfer/hashed-read';
import { SinglePassSource } from '../transfer/single-pass-source';

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
    const input = hashedReadStream(source, { onBytes: options.onProgress });
    await this.writeFile(input.stream, url, options);
    return input.result();
  }

  async openRead(url: string, options: TransferOptions = {}): Promise<Readable> {
    const source = await this.resolve(url);
    // Opened here, so a missing file rejects now rather than as a stream error later.
    const handle = await fs.open(source, 'r').catch((err) => this.fail(url, err));
    const info = await handle.stat();
    if (!info.isFile()) {
      await handle.close();
      throw new DomainError(ErrorCode.StorageFailed, `${url}: not a file`);
    }
    return countedStream(handle.createReadStream({ signal: options.signal }), options.onProgress);
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
    await fs.mkdir(path.dirname(target), { recursive: true });
    const partial = `${target}.tesp-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}.part`;
    try {
      // 'wx': a file (or link) already at the partial name is refused, not written through.
      await pipeline(stream, createWriteStream(partial, { flags: 'wx' }), { signal: options.signal });
      const refused = beforeCommit?.();
      if (refused) throw refused;
      await fs.rename(partial, target);
    } catch (err) {
      stream.destroy();
      await fs.rm(partial, { force: true });
      if (err instanceof DomainError) throw err;
      this.fail(url, err);
    }
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

import { DomainError, ErrorCode } from '../common/domain-error';
import { redactUrl } from '../common/redact';
import type { Settings } from '../config/settings.schema';
import { FileStorageBackend } from './file/file-storage.backend';
import { FtpStorageBackend } from './ftp/ftp-storage.backend';
import { HttpStorageBackend } from './http/http-storage.backend';
import { IrodsStorageBackend } from './irods/irods-storage.backend';
import { S3StorageBackend } from './s3/s3-storage.backend';
import type { StorageBackend } from './storage-backend';

/** The enabled storage backends, chosen by URL scheme. A plain absolute path counts as file://. */
export class StorageRegistry {
  private readonly byScheme = new Map<string, StorageBackend>();

  constructor(readonly backends: readonly StorageBackend[]) {
    for (const backend of backends) {
      for (const scheme of backend.schemes) this.byScheme.set(scheme, backend);
    }
  }

  static fromSettings(settings: Settings): StorageRegistry {
    const backends: StorageBackend[] = [];
    if (settings.storage.file.enabled) backends.push(new FileStorageBackend(settings.storage.file.allowed_dirs));
    const parts = { partBytes: settings.storage.transfer.part_size_mb * 1024 * 1024, parallel: settings.storage.transfer.parallel_parts };
    if (settings.storage.http.enabled) backends.push(new HttpStorageBackend(settings.storage.http, parts));
    if (settings.storage.ftp.enabled) backends.push(new FtpStorageBackend(settings.storage.ftp));
    if (settings.storage.s3.enabled) backends.push(new S3StorageBackend(settings.storage.s3, parts));
    if (settings.storage.irods.enabled) backends.push(new IrodsStorageBackend(settings.storage.irods, parts));
    return new StorageRegistry(backends);
  }

  schemes(): string[] {
    return [...this.byScheme.keys()];
  }

  /** service-info `storage`: the locations each enabled backend serves. */
  locations(): string[] {
    return this.backends.flatMap((backend) => backend.locations());
  }

  forUrl(url: string): StorageBackend {
    const scheme = schemeOf(url);
    const backend = scheme ? this.byScheme.get(scheme) : undefined;
    if (!backend) {
      const enabled = this.schemes().join(', ') || 'none';
      const named = scheme ? `the scheme "${scheme}:" is not served` : 'it is neither a URL nor an absolute path';
      throw new DomainError(ErrorCode.StorageDenied, `${redactUrl(url)}: ${named} (enabled: ${enabled})`);
    }
    return backend;
  }

  /** Checks a task's URL at creation: why it cannot be used, or undefined. */
  async validateUrl(url: string): Promise<string | undefined> {
    let backend: StorageBackend;
    try {
      backend = this.forUrl(url);
    } catch (err) {
      return (err as Error).message;
    }
    if (backend.problemWith) return backend.problemWith(url);
    try {
      const parsed = new URL(url);
      if (!parsed.hostname) return `${redactUrl(url)} has no host`;
    } catch {
      return `${redactUrl(url)} is not a valid URL`;
    }
    return undefined;
  }

  async close(): Promise<void> {
    for (const backend of this.backends) await (backend as { close?: () => Promise<void> }).close?.();
  }
}

function schemeOf(url: string): string | undefined {
  if (url.startsWith('/')) return 'file';
  const match = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(url);
  return match?.[1].toLowerCase();
}

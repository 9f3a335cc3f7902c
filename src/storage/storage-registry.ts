import { DomainError, ErrorCode } from '../domain/domain-error';
import { redactUrl } from '../common/redact';
import type { Settings } from '../config/settings.schema';
import { FileStorageBackend } from './file/file-storage.backend';
import { FtpStorageBackend } from './ftp/ftp-storage.backend';
import { HttpStorageBackend } from './http/http-storage.backend';
import { IrodsStorageBackend } from './irods/irods-storage.backend';
import { S3StorageBackend } from './s3/s3-storage.backend';
import { SftpStorageBackend } from './sftp/sftp-storage.backend';
import type { StorageBackend } from './storage-backend';

/**
 * Schemes tesp has a backend for, and the settings that turn each on. A URL with one of these schemes is accepted
 * when a task is created even where the backend is off (the TES compliance suite submits s3:// inputs to servers
 * without S3); the task then ends SYSTEM_ERROR at staging, naming the settings to set.
 */
const KNOWN_SCHEMES: Readonly<Record<string, string>> = {
  file: 'storage.file.enabled and storage.file.allowed_dirs',
  http: 'storage.http.enabled',
  https: 'storage.http.enabled',
  ftp: 'storage.ftp.enabled',
  sftp: 'storage.sftp.enabled with storage.sftp.hosts and storage.sftp.known_hosts',
  s3: 'storage.s3.enabled with storage.s3.endpoint (or AWS credentials)',
  irods: 'storage.irods.enabled with storage.irods.zones and credentials',
};

/** The enabled storage backends, chosen by URL scheme. A plain absolute path counts as file://. */
export class StorageRegistry {
  private readonly byScheme = new Map<string, StorageBackend>();

  constructor(readonly backends: readonly StorageBackend[]) {
    for (const backend of backends) {
      for (const scheme of backend.schemes) this.byScheme.set(scheme, backend);
    }
  }

  static fromSettings(storage: Settings['storage']): StorageRegistry {
    const backends: StorageBackend[] = [];
    if (storage.file.enabled) backends.push(new FileStorageBackend(storage.file.allowed_dirs));
    const parts = { partBytes: storage.transfer.part_size_mb * 1024 * 1024, parallel: storage.transfer.parallel_parts };
    if (storage.http.enabled) backends.push(new HttpStorageBackend(storage.http, parts));
    if (storage.ftp.enabled) backends.push(new FtpStorageBackend(storage.ftp));
    if (storage.sftp.enabled) backends.push(new SftpStorageBackend(storage.sftp, parts));
    if (storage.s3.enabled) backends.push(new S3StorageBackend(storage.s3, parts));
    if (storage.irods.enabled) backends.push(new IrodsStorageBackend(storage.irods, parts));
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
      if (scheme && KNOWN_SCHEMES[scheme]) {
        throw new DomainError(ErrorCode.StorageDenied, `${redactUrl(url)}: the scheme "${scheme}:" is not configured on this server (set ${KNOWN_SCHEMES[scheme]}; enabled: ${enabled})`);
      }
      const named = scheme ? `the scheme "${scheme}:" is not served` : 'it is neither a URL nor an absolute path';
      throw new DomainError(ErrorCode.StorageDenied, `${redactUrl(url)}: ${named} (enabled: ${enabled})`);
    }
    return backend;
  }

  /**
   * Checks a task's URL at creation: why it cannot be used, or undefined. A known scheme whose backend is off
   * passes when the URL is well formed; staging then says which settings are missing.
   */
  async validateUrl(url: string): Promise<string | undefined> {
    const scheme = schemeOf(url);
    const backend = scheme ? this.byScheme.get(scheme) : undefined;
    if (!backend && !(scheme && KNOWN_SCHEMES[scheme])) {
      try {
        this.forUrl(url);
      } catch (err) {
        return (err as Error).message;
      }
    }
    const problem = await backend?.problemWith?.(url);
    if (problem || url.startsWith('/')) return problem;
    try {
      const parsed = new URL(url);
      if (!parsed.hostname && scheme !== 'file') return `${redactUrl(url)} has no host`;
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

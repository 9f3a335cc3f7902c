import { Inject, Injectable } from '@nestjs/common';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { SETTINGS } from '../config/settings.module';
import type { Settings } from '../config/settings.schema';
import { COMPUTE_BACKEND, ComputeBackend } from '../compute/compute-backend';
import { StorageRegistry } from '../storage/storage-registry';
import { BASIC_REALM } from '../auth/basic/basic.authenticator';

const VERSION: string = JSON.parse(readFileSync(path.resolve(__dirname, '..', '..', 'package.json'), 'utf8')).version;

/** GA4GH service-info for TES, built from settings and from what is actually enabled. */
@Injectable()
export class ServiceInfoService {
  private readonly body: Record<string, unknown>;

  constructor(
    @Inject(SETTINGS) settings: Settings,
    @Inject(COMPUTE_BACKEND) private readonly backend: ComputeBackend,
    storage: StorageRegistry,
  ) {
    const info = settings.service_info;
    this.body = {
      id: info.id,
      name: info.name,
      type: { group: 'org.ga4gh', artifact: 'tes', version: '1.1.0' },
      description: info.description,
      organization: { name: info.organization_name, url: info.organization_url },
      contactUrl: info.contact_url,
      documentationUrl: info.documentation_url,
      createdAt: info.created_at,
      updatedAt: info.created_at,
      environment: info.environment,
      version: VERSION,
      storage: storage.locations(),
      tesResources_backend_parameters: backend.backendParameters.map((parameter) => parameter.key),
      ...authDescription(settings.auth),
    };
  }

  get(): Record<string, unknown> {
    const compute = this.backend.describe?.();
    return compute ? { ...this.body, tesp_compute: { backend: this.backend.name, ...compute } } : this.body;
  }
}

/**
 * tesp_auth, an extension field beside the spec's (as tesp_compute is), only while authentication is on: the
 * Authorization schemes accepted and where bearer tokens come from. With auth.modes [none] the answer has the spec's
 * fields only.
 */
function authDescription(auth: Settings['auth']): Record<string, unknown> {
  if (auth.modes.includes('none')) return {};
  const basic = auth.modes.includes('basic');
  const oidc = auth.modes.includes('oidc');
  return {
    tesp_auth: {
      schemes: auth.modes.map((mode) => (mode === 'basic' ? 'Basic' : 'Bearer')),
      ...(basic ? { basic_realm: BASIC_REALM } : {}),
      ...(oidc ? { oidc_issuers: [...auth.oidc.issuers], oidc_audience: auth.oidc.audience } : {}),
    },
  };
}

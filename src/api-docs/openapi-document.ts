import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import * as yaml from 'js-yaml';

const OPENAPI_DIR = path.resolve(__dirname, '..', '..', 'openapi');
const SERVICE_INFO_REF = /^https:\/\/raw\.githubusercontent\.com\/ga4gh-discovery\/ga4gh-service-info\/v1\.0\.0\/service-info\.yaml#\/components\/schemas\/(\w+)$/;

/**
 * The official TES OpenAPI document, with the GA4GH service-info schemas it references merged in so it resolves
 * offline, and servers set to where tesp serves it.
 */
export function loadTesOpenApiDocument(): Record<string, any> {
  const tes = yaml.load(readFileSync(path.join(OPENAPI_DIR, 'tes-openapi.yaml'), 'utf8')) as Record<string, any>;
  const serviceInfo = yaml.load(readFileSync(path.join(OPENAPI_DIR, 'ga4gh-service-info-v1.0.0.yaml'), 'utf8')) as Record<string, any>;
  for (const [name, schema] of Object.entries(serviceInfo.components.schemas as Record<string, unknown>)) {
    tes.components.schemas[name] ??= schema;
  }
  const rewrite = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(rewrite);
    else if (node && typeof node === 'object') {
      for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
        if (key === '$ref' && typeof value === 'string') {
          const match = SERVICE_INFO_REF.exec(value);
          if (match) (node as Record<string, unknown>)[key] = `#/components/schemas/${match[1]}`;
        } else rewrite(value);
      }
    }
  };
  rewrite(tes);
  tes.servers = [{ url: '/ga4gh/tes/v1' }, { url: '/v1' }];
  return tes;
}

/**
 * The login Swagger UI offers for auth.modes: an HTTP Basic and/or a bearer scheme, required (either one) on every
 * operation but service-info, which stays public.
 */
export function withSecuritySchemes(document: Record<string, any>, modes: readonly string[]): Record<string, any> {
  const schemes: Record<string, unknown> = {};
  if (modes.includes('basic')) schemes.basicAuth = { type: 'http', scheme: 'basic', description: 'A user of auth.basic.users' };
  if (modes.includes('oidc')) schemes.bearerAuth = { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'An access token of an issuer in auth.oidc.issuers' };
  if (Object.keys(schemes).length === 0) return document;
  document.components.securitySchemes = { ...document.components.securitySchemes, ...schemes };
  document.security = Object.keys(schemes).map((name) => ({ [name]: [] }));
  for (const operation of Object.values(document.paths['/service-info'] ?? {}) as Array<Record<string, unknown>>) operation.security = [];
  return document;
}

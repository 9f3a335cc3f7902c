import { redactUrl } from '../common/redact';
import { DomainError, ErrorCode } from '../domain/domain-error';
import { settingEntries } from './setting-entries';

// storage.s3.buckets: "bucket=http(s)://[access:secret@]host[:port][?region=..&force_path_style=true|false]"
// entries, for buckets that live on another endpoint, in another region or under other credentials than the
// storage.s3 defaults.

export interface S3Endpoint {
  /** Empty: the SDK's own AWS endpoint. */
  endpoint: string;
  region: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  forcePathStyle: boolean;
}

const KEY = 'storage.s3.buckets';
// S3's bucket naming rules: 3-63 characters of lower-case letters, digits, dots and hyphens, starting and ending
// with a letter or digit.
const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const QUERY_KEYS = new Set(['region', 'force_path_style']);

export function parseBucketEntries(entries: readonly string[], defaults: S3Endpoint): Map<string, S3Endpoint> {
  const buckets = new Map<string, S3Endpoint>();
  for (const [bucket, value] of settingEntries(KEY, entries, 'bucket')) {
    if (!BUCKET_NAME.test(bucket)) throw new DomainError(ErrorCode.InvalidArgument, `${KEY}: "${bucket}" is not a valid bucket name`);
    buckets.set(bucket, parseEndpoint(bucket, value, defaults));
  }
  return buckets;
}

function parseEndpoint(bucket: string, value: string, defaults: S3Endpoint): S3Endpoint {
  const fail = (why: string) => new DomainError(ErrorCode.InvalidArgument, `${KEY}: the entry for "${bucket}" ${why}`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw fail('is not bucket=http(s)://[access:secret@]host[:port][?region=...&force_path_style=...]');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw fail(`has the scheme "${url.protocol}"; the endpoint must be http(s)`);
  if (url.pathname !== '/' && url.pathname !== '') throw fail(`has a path (${redactUrl(value)}); give the endpoint only`);
  if (url.hash) throw fail('has a #fragment');
  if (Boolean(url.username) !== Boolean(url.password)) throw fail('has an access key without a secret or a secret without an access key');
  for (const key of url.searchParams.keys()) {
    if (!QUERY_KEYS.has(key)) throw fail(`has the unknown option "${key}" (known: region, force_path_style)`);
  }
  const pathStyle = url.searchParams.get('force_path_style');
  if (pathStyle !== null && pathStyle !== 'true' && pathStyle !== 'false') throw fail(`has force_path_style=${pathStyle}; use true or false`);
  const region = url.searchParams.get('region');
  if (region !== null && !/^[a-z0-9-]+$/i.test(region)) throw fail(`has the region "${region}", which is not a region name`);
  return {
    endpoint: url.origin,
    region: region ?? defaults.region,
    accessKeyId: url.username ? decodeURIComponent(url.username) : defaults.accessKeyId,
    secretAccessKey: url.username ? decodeURIComponent(url.password) : defaults.secretAccessKey,
    forcePathStyle: pathStyle === null ? defaults.forcePathStyle : pathStyle === 'true',
  };
}

// The one settings schema. Each leaf says its type, default and bounds; the loader validates every key at
// start-up and names the key in its error. Backend sections are validated only when that backend is selected.

export type Leaf =
  | { kind: 'string'; default: string; allowEmpty?: boolean; oneOf?: readonly string[]; url?: 'http(s)'; dateTime?: boolean }
  | { kind: 'int'; default: number; min: number; max: number }
  | { kind: 'bool'; default: boolean }
  | { kind: 'list'; default: string[] };

export type Schema = { [key: string]: Leaf | Schema };

type StringLeaf = Extract<Leaf, { kind: 'string' }>;
const str = (def: string, extra: Partial<StringLeaf> = {}): StringLeaf => ({ kind: 'string', default: def, ...extra });
const int = (def: number, min: number, max: number): Extract<Leaf, { kind: 'int' }> => ({ kind: 'int', default: def, min, max });
const bool = (def: boolean): Extract<Leaf, { kind: 'bool' }> => ({ kind: 'bool', default: def });
const list = (def: string[]): Extract<Leaf, { kind: 'list' }> => ({ kind: 'list', default: def });

export const settingsSchema = {
  server: {
    host: str('0.0.0.0'),
    port: int(8080, 0, 65535),
    body_limit_mb: int(64, 16, 1024),
    cors: bool(true),
  },
  logging: {
    level: str('info', { oneOf: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] }),
  },
  service_info: {
    id: str('org.tesp.local'),
    name: str('tesp'),
    description: str('GA4GH TES v1.1 task execution service'),
    organization_name: str('tesp'),
    organization_url: str('https://github.com/tesp-project/tesp', { url: 'http(s)' }),
    contact_url: str('https://github.com/tesp-project/tesp/issues', { url: 'http(s)' }),
    documentation_url: str('https://github.com/tesp-project/tesp#readme', { url: 'http(s)' }),
    environment: str('dev'),
    created_at: str('2026-11-22T00:00:00Z', { dateTime: true }),
  },
  data_dir: str('./data'),
  store: {
    kind: str('sqlite', { oneOf: ['sqlite'] }),
    sqlite: {
      file: str('tesp.sqlite'),
    },
  },
  scheduler: {
    // A short delay before a new task is claimed leaves room to cancel it before it starts.
    dispatch_delay_ms: int(200, 0, 3_600_000),
    poll_interval_ms: int(1000, 50, 60_000),
    max_concurrent_tasks: int(4, 1, 10_000),
  },
  compute: {
    backend: str('local', { oneOf: ['local'] }),
    local: {
      runtime: str('docker', { oneOf: ['docker', 'process'] }),
      docker_socket: str('/var/run/docker.sock'),
      allow_network: bool(false),
      pull_images: bool(true),
      log_tail_bytes: int(65_536, 1024, 16 * 1024 * 1024),
      log_refresh_ms: int(1000, 100, 60_000),
      keep_task_dirs: bool(false),
      // Cancel sends SIGTERM, then SIGKILL after this many seconds, then removes the container.
      stop_timeout_s: int(2, 0, 30),
    },
  },
  storage: {
    transfer: {
      // Parts of large files move in parallel, each retried from where it broke off.
      part_size_mb: int(8, 1, 1024),
      parallel_parts: int(4, 1, 64),
    },
    file: {
      enabled: bool(true),
      // Absolute host directories that file:// URLs and plain paths may read from and write to.
      allowed_dirs: list([]),
    },
    http: {
      enabled: bool(true),
      max_redirects: int(5, 0, 20),
      retries: int(5, 0, 20),
      retry_base_ms: int(500, 1, 60_000),
      retry_max_ms: int(30_000, 1, 600_000),
      connect_timeout_ms: int(10_000, 100, 600_000),
      idle_timeout_ms: int(60_000, 100, 3_600_000),
      max_input_bytes: int(0, 0, Number.MAX_SAFE_INTEGER),
    },
    s3: {
      // Off until an endpoint or AWS credentials are configured.
      enabled: bool(false),
      endpoint: str('', { allowEmpty: true }),
      region: str('us-east-1'),
      access_key_id: str('', { allowEmpty: true }),
      secret_access_key: str('', { allowEmpty: true }),
      force_path_style: bool(true),
      // "bucket=http(s)://[access:secret@]host[:port][?region=..&force_path_style=..]" entries for buckets that
      // live elsewhere than the defaults above.
      buckets: list([]),
      retries: int(5, 0, 20),
      retry_base_ms: int(500, 1, 60_000),
      retry_max_ms: int(30_000, 1, 600_000),
    },
    ftp: {
      enabled: bool(true),
      // "host[:port]=user:password" entries for URLs that carry no credentials.
      credentials: list([]),
      timeout_ms: int(30_000, 100, 3_600_000),
      retries: int(5, 0, 20),
      retry_base_ms: int(500, 1, 60_000),
      retry_max_ms: int(30_000, 1, 600_000),
    },
    irods: {
      // Off until a zone is mapped to its iRODS HTTP API.
      enabled: bool(false),
      // "zone=http(s)://host:port/irods-http-api/<version>" entries; the base URL includes the API version.
      zones: list([]),
      // "zone=user:password" entries, exchanged for a bearer token (renewed when it lapses).
      credentials: list([]),
      // "zone=token" entries: an OpenID Connect access token, sent as it is.
      access_tokens: list([]),
      write_streams: int(3, 1, 64),
      chunk_size_mb: int(8, 1, 1024),
      verify_checksums: bool(true),
      idle_timeout_ms: int(60_000, 100, 3_600_000),
      retries: int(5, 0, 20),
      retry_base_ms: int(500, 1, 60_000),
      retry_max_ms: int(30_000, 1, 600_000),
    },
  },
} satisfies Schema;

type LeafValue<L> = L extends { kind: 'string' } ? string
  : L extends { kind: 'int' } ? number
  : L extends { kind: 'bool' } ? boolean
  : L extends { kind: 'list' } ? readonly string[]
  : never;

export type SettingsOf<S> = { readonly [K in keyof S]: S[K] extends Leaf ? LeafValue<S[K]> : SettingsOf<S[K]> };

export type Settings = SettingsOf<typeof settingsSchema>;

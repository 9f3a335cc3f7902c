import { checkAuthModes, checkIssuers, parseHtpasswdEntries } from './auth-entries';
import { checkCidrEntries } from './cidr-entries';
import { parseFtpCredentials } from './ftp-credential-entries';
import { parseIrodsAuth, parseIrodsZones } from './irods-zone-entries';
import { parseRunnerEntries } from './runner-entries';
import { parseBucketEntries } from './s3-bucket-entries';
import { parseSftpHosts } from './sftp-host-entries';

// The one settings schema. Each leaf says its type, default and bounds; the loader validates every key at
// start-up and names the key and where its value came from in its error. Entry lists are checked here with the
// parsers their storage backends use, so a malformed entry stops start-up like any other bad value.

export type Leaf =
  | { kind: 'string'; default: string; allowEmpty?: boolean; oneOf?: readonly string[]; url?: 'http(s)'; dateTime?: boolean; pattern?: { regex: RegExp; what: string } }
  | { kind: 'int'; default: number; min: number; max: number }
  | { kind: 'bool'; default: boolean }
  /** `check` throws, naming the problem, when an entry is malformed. */
  | { kind: 'list'; default: string[]; check?: (items: readonly string[]) => unknown };

export type Schema = { [key: string]: Leaf | Schema };

type StringLeaf = Extract<Leaf, { kind: 'string' }>;
const str = (def: string, extra: Partial<StringLeaf> = {}): StringLeaf => ({ kind: 'string', default: def, ...extra });
const int = (def: number, min: number, max: number): Extract<Leaf, { kind: 'int' }> => ({ kind: 'int', default: def, min, max });
const bool = (def: boolean): Extract<Leaf, { kind: 'bool' }> => ({ kind: 'bool', default: def });
const list = (def: string[], check?: (items: readonly string[]) => unknown): Extract<Leaf, { kind: 'list' }> => ({ kind: 'list', default: def, check });

/** CORS origins as browsers send them: scheme, host and port, nothing else. */
function checkOrigins(items: readonly string[]): void {
  items.forEach((origin, i) => {
    if (!/^https?:\/\/[^/\s?#@]+$/.test(origin)) throw new Error(`entry ${i} ("${origin}") is not an origin such as https://app.example.org or http://127.0.0.1:3000`);
  });
}

/** Host directories must be absolute: a relative one would depend on where tesp happens to be started. */
function checkAbsoluteDirs(items: readonly string[]): void {
  items.forEach((dir, i) => {
    if (!dir.startsWith('/')) throw new Error(`entry ${i} ("${dir}") is not an absolute path; write it from / (relative directories are refused)`);
  });
}

export const settingsSchema = {
  server: {
    // Loopback by default: no one else can reach an unauthenticated server.
    host: str('127.0.0.1'),
    // Listening beyond loopback with auth.modes [none] stops start-up unless this is set (a warning is logged then).
    allow_unauthenticated_remote: bool(false),
    port: int(8080, 0, 65535),
    // Largest JSON request body. Every byte of it is parsed and held while a task is checked, so a hostile client
    // sends at most this much per request; inline content inputs are bounded again by limits.content_bytes.
    body_limit_mb: int(16, 1, 1024),
    // JSON bodies being read and parsed at once, all requests together (each costs about three times its size
    // until answered); beyond it a request answers 503 with Retry-After. At least body_limit_mb in effect.
    json_in_flight_mb: int(128, 1, 65_536),
    // Slow clients: time to send the request head (slowloris), the whole request, and idle time between requests
    // on a kept-alive connection. Behind a reverse proxy, keep_alive_timeout_ms should exceed the proxy's own.
    headers_timeout_ms: int(10_000, 1000, 600_000),
    // Uploads to the staging routes (AMQP runners posting outputs) must finish within it too.
    request_timeout_ms: int(600_000, 1000, 86_400_000),
    keep_alive_timeout_ms: int(10_000, 1000, 600_000),
    // Connections open at once; beyond it new ones are closed at once (logged, at most once a minute).
    max_connections: int(4096, 16, 1_000_000),
    // Web origins allowed to call the API from a browser; none by default.
    cors_origins: list([], checkOrigins),
  },
  // Who may call the API (README, Security). Every route but service-info, / and /docs needs a user unless [none].
  auth: {
    // none, or any of basic and oidc (a request may use either).
    modes: list(['none'], checkAuthModes),
    basic: {
      // htpasswd bcrypt lines, "name:$2y$..." as `htpasswd -nbB name password` prints them.
      users: list([], (items) => parseHtpasswdEntries(items)),
      // An htpasswd file with more such lines (a mounted secret), read at start-up; joins users.
      users_file: str('', { allowEmpty: true }),
      // How long a verified Authorization header is remembered (bcrypt is slow by design); 0: check every time.
      cache_ttl_s: int(60, 0, 3600),
    },
    oidc: {
      // Issuer URLs whose tokens are accepted; a token naming another issuer is refused without contacting it.
      issuers: list([], checkIssuers),
      // The `aud` a token must carry (required with oidc).
      audience: str('', { allowEmpty: true }),
      // Scopes (the scope or scp claim) and groups (groups_claim) a token must all carry, else 403.
      required_scopes: list([]),
      required_groups: list([]),
      groups_claim: str('groups'),
      clock_skew_s: int(30, 0, 600),
      // A token signed by a key the issuer's JWKS lacks fetches the JWKS again at most this often per issuer.
      jwks_refetch_interval_s: int(60, 0, 86_400),
      request_timeout_ms: int(10_000, 100, 600_000),
      // Opaque (non-JWT) tokens are introspected (RFC 7662) at the first issuer with this client; empty: refused.
      introspection_client_id: str('', { allowEmpty: true }),
      introspection_client_secret: str('', { allowEmpty: true }),
      // A file holding the secret instead (a mounted secret); wins over introspection_client_secret.
      introspection_client_secret_file: str('', { allowEmpty: true }),
    },
    // Admins see and cancel every task: Basic user names, OpenID Connect names (<issuer>#<sub>), groups from
    // auth.oidc.groups_claim, or a claim with a given value.
    admin: {
      users: list([]),
      groups: list([]),
      claim: str('', { allowEmpty: true }),
      claim_value: str('', { allowEmpty: true }),
    },
    // A token bucket per user (per address for anonymous callers): 429 with Retry-After when it is empty.
    rate_limit: {
      // 0: no limit.
      requests_per_minute: int(0, 0, 1_000_000),
      // Requests a user may send at once; 0: requests_per_minute.
      burst: int(0, 0, 1_000_000),
    },
  },
  // What one request may hold; a request beyond a limit answers 400 naming the limit's key and value. Strings are
  // measured in characters (UTF-16 code units), content and command in UTF-8 bytes.
  limits: {
    inputs: int(1000, 1, 100_000),
    outputs: int(1000, 1, 100_000),
    executors: int(100, 1, 10_000),
    tags: int(256, 0, 100_000),
    volumes: int(256, 0, 100_000),
    // Per executor.
    env_entries: int(1000, 0, 100_000),
    command_args: int(10_000, 1, 1_000_000),
    command_bytes: int(1024 * 1024, 1024, 256 * 1024 * 1024),
    // Zones and backend parameters of a task's resources.
    resource_entries: int(100, 0, 100_000),
    // One inline input's content. The spec asks for at least 128 KiB; 1 MiB takes the workflow scripts that
    // Snakemake and Nextflow inline, and keeps a task small to store, parse and send.
    content_bytes: int(1024 * 1024, 128 * 1024, 1024 * 1024 * 1024),
    name_chars: int(1024, 16, 1024 * 1024),
    description_chars: int(65_536, 16, 16 * 1024 * 1024),
    url_chars: int(8192, 256, 1024 * 1024),
    path_chars: int(4096, 256, 1024 * 1024),
    tag_key_chars: int(1024, 16, 1024 * 1024),
    tag_value_chars: int(4096, 16, 16 * 1024 * 1024),
    // Every other string: image, env values, zones, backend parameter keys and values.
    string_chars: int(65_536, 256, 16 * 1024 * 1024),
    // tag_key parameters of one list request.
    list_tag_filters: int(32, 1, 1000),
    // The shape of a JSON body, checked before it is parsed: nesting depth (a task nests 4 deep) and values (array
    // entries, object members and containers together). JSON.parse costs by structure, not by bytes.
    json_depth: int(64, 8, 10_000),
    json_values: int(100_000, 1000, 100_000_000),
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
    kind: str('sqlite', { oneOf: ['sqlite', 'mongodb'] }),
    // The most a FULL list page holds, in bytes of stored tasks: the page ends early, with a next_page_token.
    full_page_bytes: int(16 * 1024 * 1024, 1024 * 1024, 1024 * 1024 * 1024),
    sqlite: {
      file: str('tesp.sqlite'),
    },
    mongodb: {
      // mongodb://[user:password@]host[:port]/database[?options]; credentials are never logged.
      url: str('', { allowEmpty: true }),
      // A file holding the URL instead (a mounted secret); wins over url.
      url_file: str('', { allowEmpty: true }),
      // How long an operation waits for a reachable server before it fails (the API answers 503 meanwhile).
      server_selection_timeout_ms: int(5000, 100, 600_000),
    },
  },
  scheduler: {
    // This replica's name in task leases; empty: <hostname>:<pid>. Unique among the replicas running at once.
    holder_id: str('', { allowEmpty: true }),
    poll_interval_ms: int(1000, 50, 60_000),
    // How long a replica's hold on a task lasts without renewal; another replica takes the task over after that.
    lease_ms: int(30_000, 500, 3_600_000),
    // Runs of one task, when a replica taking it over cannot adopt the earlier run's work.
    max_attempts: int(3, 1, 20),
  },
  compute: {
    backend: str('local', { oneOf: ['local', 'pulsar'] }),
    local: {
      // Tasks one replica runs at once; the rest wait QUEUED. 0: this replica only serves the API.
      max_concurrent_tasks: int(4, 0, 10_000),
      // slurm: each task is one Slurm job (compute.slurm), its executors run as compute.slurm.containers says.
      runtime: str('docker', { oneOf: ['docker', 'process', 'slurm'] }),
      docker_socket: str('/var/run/docker.sock'),
      allow_network: bool(false),
      pull_images: bool(true),
      log_tail_bytes: int(65_536, 1024, 16 * 1024 * 1024),
      log_refresh_ms: int(1000, 100, 60_000),
      keep_task_dirs: bool(false),
      // Cancel sends SIGTERM, then SIGKILL after this many seconds, then removes the container.
      stop_timeout_s: int(2, 0, 30),
      // Docker executors run as the image's USER when it is not root, else as executor_user, with every capability
      // dropped and no new privileges. run_as_root: the image's user even when root, with Docker's default
      // capabilities (no new privileges still), for images that need root.
      run_as_root: bool(false),
      // uid[:gid] for images whose USER is root or unset; empty: tesp's own uid:gid when it is not root, else 65534:65534.
      executor_user: str('', { allowEmpty: true, pattern: { regex: /^\d+(:\d+)?$/, what: 'a numeric uid[:gid] such as 1000:1000' } }),
    },
    // The slurm runtime (compute.local.runtime: slurm, and `tesp runner` with that runtime): jobs go in with sbatch
    // on this host, their state is read with squeue/sacct.
    slurm: {
      // The directory the nodes see at the same path (shared file system), where task directories live; empty:
      // <data_dir>/slurm.
      work_dir: str('', { allowEmpty: true }),
      // Defaults for sbatch --partition and --account; a task's backend_parameters partition/account win.
      partition: str('', { allowEmpty: true }),
      account: str('', { allowEmpty: true }),
      // More sbatch arguments, one per entry (e.g. --qos=normal), before tesp's own.
      sbatch_args: list([]),
      // How executors run on the nodes: docker, apptainer (Apptainer/Singularity) or plain processes.
      containers: str('docker', { oneOf: ['docker', 'apptainer', 'process'] }),
      apptainer_command: str('apptainer'),
      // How often job states are read, for all jobs at once (one squeue, and one sacct for jobs it no longer lists).
      poll_interval_ms: int(2000, 100, 600_000),
      // A job Slurm shows RUNNING whose script has not started after this long is cancelled (SYSTEM_ERROR).
      launch_timeout_s: int(120, 5, 86_400),
      // How long one sbatch, squeue, sacct or scancel may take.
      command_timeout_ms: int(30_000, 1000, 600_000),
    },
    pulsar: {
      // "name=http(s)://[TOKEN@]host:port[/managers/MANAGER][?runtime=docker|apptainer|process]" entries.
      runners: list([], parseRunnerEntries),
      // Tasks one replica follows at once over all runners; the rest wait QUEUED. 0: this replica only serves the API.
      max_concurrent_tasks: int(100, 0, 10_000),
      // Status polling of a running job: starts at poll_interval_ms, backs off to poll_max_interval_ms on errors.
      poll_interval_ms: int(1000, 50, 60_000),
      poll_max_interval_ms: int(15_000, 50, 600_000),
      // How often a runner's health is checked (/healthz), also while it is down.
      health_interval_ms: int(5000, 100, 600_000),
      request_timeout_ms: int(30_000, 100, 3_600_000),
      // Bytes of each executor's stdout and stderr shown in the task log (the last ones), refreshed while it runs.
      log_tail_bytes: int(65_536, 1024, 16 * 1024 * 1024),
      log_refresh_ms: int(2000, 100, 600_000),
      // AMQP runners fetch inputs from and post outputs to tesp's staging URLs under this base (how they reach the
      // API); empty: http://<server.host>:<server.port>.
      staging_url: str('', { allowEmpty: true, url: 'http(s)' }),
      // The key of staging URLs is an HMAC under this secret: the same on every replica. Empty: one per process.
      staging_secret: str('', { allowEmpty: true }),
      // A file holding the secret instead (a mounted secret); wins over staging_secret.
      staging_secret_file: str('', { allowEmpty: true }),
      // AMQP: how often the holder asks for the status of its jobs, in case an update was lost (none is polled else).
      amqp_status_interval_ms: int(300_000, 1000, 86_400_000),
    },
  },
  // `tesp runner`: the Pulsar-compatible runner a centre runs next to its compute (node dist/main.js runner). It
  // uses compute.local (runtime, docker_socket, stop_timeout_s) and storage from this same schema.
  runner: {
    host: str('127.0.0.1'),
    port: int(8913, 0, 65535),
    // Pulsar's private_token: required as a query parameter on every route when set.
    private_token: str('', { allowEmpty: true }),
    // Job directories; empty: <data_dir>/runner/jobs.
    staging_dir: str('', { allowEmpty: true }),
    // Jobs run at once; the rest wait 'queued'.
    max_concurrent_jobs: int(4, 1, 10_000),
    // Stage inputs and outputs itself with its storage backends when tesp asks (direct staging).
    direct_staging: bool(true),
    amqp: {
      // amqp(s)://user:password@host:port/vhost: consume this broker's queues of `manager` (Pulsar's message mode).
      url: str('', { allowEmpty: true }),
      // A file holding the URL instead (it carries the broker's password); wins over url.
      url_file: str('', { allowEmpty: true }),
      // Queues pulsar_<manager>__setup, __kill, __status (pulsar__setup, ... for _default_).
      manager: str('_default_'),
      // Pulsar's amqp_acknowledge: status updates carry acknowledge_uuid and are published again until answered.
      acknowledge: bool(false),
      ack_republish_ms: int(30_000, 100, 3_600_000),
      // How long posting an output or bookkeeping file to tesp is retried (tesp restarting) before the job fails.
      upload_retry_ms: int(600_000, 0, 86_400_000),
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
      allowed_dirs: list([], checkAbsoluteDirs),
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
      // Tasks' http(s) URLs (and every redirect) may reach loopback, link-local, private and metadata addresses.
      allow_private_addresses: bool(false),
      // Addresses or CIDR blocks allowed although private (e.g. an on-site web server), when the above is false.
      allowed_private_cidrs: list([], checkCidrEntries),
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
      buckets: list([], (items) => parseBucketEntries(items, { endpoint: '', region: 'us-east-1', forcePathStyle: true })),
      retries: int(5, 0, 20),
      retry_base_ms: int(500, 1, 60_000),
      retry_max_ms: int(30_000, 1, 600_000),
    },
    ftp: {
      enabled: bool(true),
      // "host[:port]=user:password" entries for URLs that carry no credentials.
      credentials: list([], parseFtpCredentials),
      timeout_ms: int(30_000, 100, 3_600_000),
      retries: int(5, 0, 20),
      retry_base_ms: int(500, 1, 60_000),
      retry_max_ms: int(30_000, 1, 600_000),
      // As storage.http: the FTP hosts tasks name may be loopback, link-local, private or metadata addresses.
      allow_private_addresses: bool(false),
      allowed_private_cidrs: list([], checkCidrEntries),
    },
    sftp: {
      enabled: bool(true),
      // "host[:port]=user;key_file=PATH;passphrase_file=PATH;password_file=PATH;agent=SOCKET" entries: logins come
      // from here, never from the URL.
      hosts: list([], parseSftpHosts),
      // An OpenSSH known_hosts file; empty: every host is unknown.
      known_hosts: str('', { allowEmpty: true }),
      // Accept a host key not in known_hosts (logged as a warning; nothing is written to the file).
      trust_unknown_hosts: bool(false),
      timeout_ms: int(30_000, 100, 3_600_000),
      retries: int(5, 0, 20),
      retry_base_ms: int(500, 1, 60_000),
      retry_max_ms: int(30_000, 1, 600_000),
      // SFTP read or write requests in flight per file.
      parallel_requests: int(8, 1, 256),
    },
    irods: {
      // Off until a zone is mapped to its iRODS HTTP API.
      enabled: bool(false),
      // "zone=http(s)://host:port/irods-http-api/<version>" entries; the base URL includes the API version.
      zones: list([], parseIrodsZones),
      // "zone=user:password" entries, exchanged for a bearer token (renewed when it lapses).
      credentials: list([], (items) => parseIrodsAuth(items, [])),
      // "zone=token" entries: an OpenID Connect access token, sent as it is.
      access_tokens: list([], (items) => parseIrodsAuth([], items)),
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

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { envNameFor, loadSettings, SettingsError } from './settings.loader';
import { settingsSchema } from './settings.schema';

function leafKeys(schema: object, prefix = ''): string[] {
  return Object.entries(schema).flatMap(([k, v]) => {
    const key = prefix ? `${prefix}.${k}` : k;
    return typeof v.kind === 'string' ? [key] : leafKeys(v, key);
  });
}

describe('loadSettings', () => {
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'tesp-settings-'));
    writeFileSync(path.join(dir, 'default.yaml'), 'server:\n  port: 8080\ncompute:\n  local:\n    max_concurrent_tasks: 4\n');
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('layers defaults, the profile file and environment variables', () => {
    writeFileSync(path.join(dir, 'fast.yaml'), 'compute:\n  local:\n    max_concurrent_tasks: 16\n');
    const settings = loadSettings({ settingsDir: dir, env: { TESP_PROFILE: 'fast', TESP_SERVER__PORT: '9090' } });
    expect(settings.server.port).toBe(9090);
    expect(settings.compute.local.max_concurrent_tasks).toBe(16);
    expect(settings.compute.local.runtime).toBe('docker');
  });

  it('reads lists as JSON or comma-separated values', () => {
    expect(loadSettings({ settingsDir: dir, env: { TESP_STORAGE__FILE__ALLOWED_DIRS: '/a, /b' } }).storage.file.allowed_dirs).toEqual(['/a', '/b']);
    expect(loadSettings({ settingsDir: dir, env: { TESP_STORAGE__FILE__ALLOWED_DIRS: '["/c"]' } }).storage.file.allowed_dirs).toEqual(['/c']);
  });

  it('refuses a relative storage.file.allowed_dirs entry, naming it, rather than resolving it against wherever tesp starts', () => {
    expect(() => loadSettings({ settingsDir: dir, env: { TESP_STORAGE__FILE__ALLOWED_DIRS: '/srv/data, shared/in' } })).toThrow(
      'setting "storage.file.allowed_dirs" (from environment variable TESP_STORAGE__FILE__ALLOWED_DIRS): entry 1 ("shared/in") is not an absolute path; write it from / (relative directories are refused)',
    );
    expect(() => loadSettings({ settingsDir: dir, overrides: { 'storage.file.allowed_dirs': ['./data'] } })).toThrow(/entry 0 \("\.\/data"\) is not an absolute path/);
  });

  it('keeps URLs with credentials and query strings whole in a JSON list (storage.s3.buckets)', () => {
    const entries = ['alpha=https://AK:se%2Fcret@s3.example.org:8443?region=eu-west-1&force_path_style=true', 'beta=http://127.0.0.1:7480'];
    expect(loadSettings({ settingsDir: dir, env: { TESP_STORAGE__S3__BUCKETS: JSON.stringify(entries) } }).storage.s3.buckets).toEqual(entries);
    expect(loadSettings({ settingsDir: dir, env: {} }).storage.s3.buckets).toEqual([]);
  });

  it('names the key and the source of a bad value', () => {
    expect(() => loadSettings({ settingsDir: dir, env: { TESP_SERVER__PORT: 'eighty' } })).toThrow(
      new SettingsError('setting "server.port" (from environment variable TESP_SERVER__PORT): must be an integer, got "eighty"'),
    );
    expect(() => loadSettings({ settingsDir: dir, env: { TESP_COMPUTE__LOCAL__RUNTIME: 'podman' } })).toThrow(/compute\.local\.runtime.*docker, process/);
    expect(() => loadSettings({ settingsDir: dir, env: { TESP_SERVICE_INFO__ORGANIZATION_URL: 'mailto:x@y' } })).toThrow(/service_info\.organization_url.*http\(s\) URL/);
    expect(() => loadSettings({ settingsDir: dir, env: { TESP_SERVICE_INFO__CREATED_AT: 'last tuesday' } })).toThrow(/service_info\.created_at.*RFC 3339 date-time/);
  });

  it('checks the egress settings: a numeric executor user, address blocks, private addresses off by default', () => {
    expect(() => loadSettings({ settingsDir: dir, env: { TESP_COMPUTE__LOCAL__EXECUTOR_USER: 'nobody' } })).toThrow(
      new SettingsError('setting "compute.local.executor_user" (from environment variable TESP_COMPUTE__LOCAL__EXECUTOR_USER): must be a numeric uid[:gid] such as 1000:1000, got "nobody"'),
    );
    expect(loadSettings({ settingsDir: dir, env: { TESP_COMPUTE__LOCAL__EXECUTOR_USER: '1000:1000' } }).compute.local.executor_user).toBe('1000:1000');
    expect(() => loadSettings({ settingsDir: dir, env: { TESP_STORAGE__HTTP__ALLOWED_PRIVATE_CIDRS: '10.0.0.0/8,intranet' } })).toThrow(
      /storage\.http\.allowed_private_cidrs.*entry 1 \("intranet"\) is not an address or CIDR block/,
    );
    const defaults = loadSettings({ settingsDir: dir, env: {} });
    expect([defaults.storage.http.allow_private_addresses, defaults.storage.ftp.allow_private_addresses, defaults.compute.local.run_as_root]).toEqual([false, false, false]);
  });

  it('refuses unknown keys and unknown profiles', () => {
    writeFileSync(path.join(dir, 'default.yaml'), 'server:\n  prot: 1\n');
    expect(() => loadSettings({ settingsDir: dir, env: {} })).toThrow(/unknown setting "server.prot"; did you mean server.port\?/);
    expect(() => loadSettings({ settingsDir: dir, env: { TESP_PROFILE: 'nope' } })).toThrow(/TESP_PROFILE "nope"/);
  });

  it('refuses an environment variable that names no setting, as it refuses the same typo in a file', () => {
    expect(() => loadSettings({ settingsDir: dir, env: { TESP_SERVER__PROT: '9090' } })).toThrow(
      new SettingsError('environment variable TESP_SERVER__PROT names no setting; did you mean TESP_SERVER__PORT?'),
    );
    expect(() => loadSettings({ settingsDir: dir, env: { TESP_NOTHING_LIKE_IT: '1' } })).toThrow(/^environment variable TESP_NOTHING_LIKE_IT names no setting$/);
    // The loader's own variables and the one executors get are not settings.
    expect(() => loadSettings({ settingsDir: dir, env: { TESP_SETTINGS_DIR: dir, TESP_TASK_ROOT: '/x', OTHER: 'y' } })).not.toThrow();
  });

  it('says where a retired setting went', () => {
    expect(() => loadSettings({ settingsDir: dir, env: { TESP_SCHEDULER__MAX_CONCURRENT_TASKS: '2' } })).toThrow(/now compute\.local\.max_concurrent_tasks/);
    writeFileSync(path.join(dir, 'default.yaml'), 'server:\n  cors: true\n');
    expect(() => loadSettings({ settingsDir: dir, env: {} })).toThrow(/unknown setting "server.cors"; it was replaced by server.cors_origins/);
  });

  it('checks entry lists at load time, naming the setting and the variable but never a secret', () => {
    const attempt = (env: Record<string, string>) => () => loadSettings({ settingsDir: dir, env });
    expect(attempt({ TESP_STORAGE__FTP__CREDENTIALS: JSON.stringify(['127.0.0.1:2121=tes:s3cret', 'no equals sign']) })).toThrow(
      new SettingsError('setting "storage.ftp.credentials" (from environment variable TESP_STORAGE__FTP__CREDENTIALS): entry 1 is not host[:port]=value'),
    );
    expect(attempt({ TESP_STORAGE__FTP__CREDENTIALS: 'host=nopassword' })).toThrow(/storage\.ftp\.credentials.*TESP_STORAGE__FTP__CREDENTIALS.*"host" is not host\[:port\]=user:password/);
    const s3 = attempt({ TESP_STORAGE__S3__BUCKETS: JSON.stringify(['data=https://AK:t0ps3cret@s3.example.org?force_path_style=maybe']) });
    expect(s3).toThrow(/"storage\.s3\.buckets" \(from environment variable TESP_STORAGE__S3__BUCKETS\): the entry for "data" has force_path_style=maybe/);
    expect(s3).not.toThrow(/t0ps3cret/);
    expect(attempt({ TESP_STORAGE__IRODS__ZONES: 'tempZone=http://127.0.0.1:9000/' })).toThrow(/storage\.irods\.zones.*is not zone=http\(s\):\/\/host:port\/irods-http-api\/<version>/);
    expect(attempt({ TESP_SERVER__CORS_ORIGINS: 'https://app.example.org/path' })).toThrow(/server\.cors_origins.*entry 0 \("https:\/\/app\.example\.org\/path"\) is not an origin/);
    expect(loadSettings({ settingsDir: dir, env: { TESP_SERVER__CORS_ORIGINS: 'https://app.example.org, http://127.0.0.1:3000' } }).server.cors_origins).toEqual(['https://app.example.org', 'http://127.0.0.1:3000']);
  });

  it('returns frozen settings', () => {
    const settings = loadSettings({ settingsDir: dir, env: {} });
    expect(Object.isFrozen(settings.server)).toBe(true);
  });

  it('maps keys to environment variable names', () => {
    expect(envNameFor('compute.local.log_tail_bytes')).toBe('TESP_COMPUTE__LOCAL__LOG_TAIL_BYTES');
  });

  it('loads the shipped settings files and every profile', () => {
    const shipped = path.resolve(__dirname, '..', '..', 'settings');
    for (const profile of ['docker', 'process']) {
      expect(() => loadSettings({ settingsDir: shipped, env: { TESP_PROFILE: profile } })).not.toThrow();
    }
    expect(loadSettings({ settingsDir: shipped, env: { TESP_PROFILE: 'process' } }).compute.local.runtime).toBe('process');
  });

  it('is documented: README.md lists every settings key', () => {
    const readme = readFileSync(path.resolve(__dirname, '..', '..', 'README.md'), 'utf8');
    const missing = leafKeys(settingsSchema).filter((key) => !readme.includes(`\`${key}\``));
    expect(missing).toEqual([]);
  });
});

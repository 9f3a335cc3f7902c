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
    writeFileSync(path.join(dir, 'default.yaml'), 'server:\n  port: 8080\nscheduler:\n  max_concurrent_tasks: 4\n');
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('layers defaults, the profile file and environment variables', () => {
    writeFileSync(path.join(dir, 'fast.yaml'), 'scheduler:\n  max_concurrent_tasks: 16\n');
    const settings = loadSettings({ settingsDir: dir, env: { TESP_PROFILE: 'fast', TESP_SERVER__PORT: '9090' } });
    expect(settings.server.port).toBe(9090);
    expect(settings.scheduler.max_concurrent_tasks).toBe(16);
    expect(settings.compute.local.runtime).toBe('docker');
  });

  it('reads lists as JSON or comma-separated values', () => {
    expect(loadSettings({ settingsDir: dir, env: { TESP_STORAGE__FILE__ALLOWED_DIRS: '/a, /b' } }).storage.file.allowed_dirs).toEqual(['/a', '/b']);
    expect(loadSettings({ settingsDir: dir, env: { TESP_STORAGE__FILE__ALLOWED_DIRS: '["/c"]' } }).storage.file.allowed_dirs).toEqual(['/c']);
  });

  it('keeps URLs with credentials and query strings whole in a JSON list (storage.s3.buckets)', () => {
    const entries = ['a=https://AK:se%2Fcret@s3.example.org:8443?region=eu-west-1&force_path_style=true', 'b=http://127.0.0.1:7480'];
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

  it('refuses unknown keys and unknown profiles', () => {
    writeFileSync(path.join(dir, 'default.yaml'), 'server:\n  prot: 1\n');
    expect(() => loadSettings({ settingsDir: dir, env: {} })).toThrow(/unknown setting "server.prot"/);
    expect(() => loadSettings({ settingsDir: dir, env: { TESP_PROFILE: 'nope' } })).toThrow(/TESP_PROFILE "nope"/);
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

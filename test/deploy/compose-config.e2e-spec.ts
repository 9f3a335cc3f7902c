// The production deployment files: docker-compose.yaml as Compose resolves it (`docker compose config`, or
// docker-compose v1 where only that exists), settings/docker.yaml through the real settings loader with the
// environment that file gives each tesp service, and the two Dockerfiles against what their comments promise.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import * as yaml from 'js-yaml';
import { loadSettings } from '../../src/config/settings.loader';
import { parseRunnerEntries } from '../../src/config/runner-entries';
import { runnerStagingDir } from '../../src/runner/runner-service';
import { describeWhen } from '../support/service-check';

const ROOT = path.resolve(__dirname, '..', '..');
const SETTINGS_DIR = path.join(ROOT, 'settings');
const TOKEN = 'd0ck3rc0mp0s3t0k3n';

/** The Compose CLI this machine has: the v2 plugin (`docker compose`) or v1 (`docker-compose`), or none. */
function findCompose(): string[] | undefined {
  for (const argv of [['docker', 'compose'], ['docker-compose']]) {
    const probe = spawnSync(argv[0], [...argv.slice(1), 'version'], { encoding: 'utf8', timeout: 30_000 });
    if (probe.status === 0) return argv;
  }
  return undefined;
}

/**
 * `config` with only the variables given (no COMPOSE_* or TESP_* of the caller's shell leaks in): Compose
 * interpolates the file from its environment.
 */
function composeConfig(compose: string[], vars: Record<string, string>): { status: number | null; stdout: string; stderr: string } {
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', ...vars };
  const run = spawnSync(compose[0], [...compose.slice(1), '--project-directory', ROOT, '-f', path.join(ROOT, 'docker-compose.yaml'), 'config'], {
    cwd: ROOT,
    env,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

interface Port { hostIp: string; published: string; target: string }
interface Mount { source: string; target: string }
interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  container_name?: string;
  environment?: Record<string, string | null>;
  ports?: Array<string | Record<string, unknown>>;
  volumes?: Array<string | Record<string, unknown>>;
  depends_on?: Record<string, { condition: string }> | string[];
  healthcheck?: { test: string[] | string };
  profiles?: string[];
}

/** v1 prints "127.0.0.1:8080-8082:8080/tcp"; v2 prints the long syntax. */
function ports(service: Service): Port[] {
  return (service.ports ?? []).map((entry) => {
    if (typeof entry === 'string') {
      const parts = entry.replace(/\/(tcp|udp)$/, '').split(':');
      if (parts.length === 3) return { hostIp: parts[0], published: parts[1], target: parts[2] };
      if (parts.length === 2) return { hostIp: '', published: parts[0], target: parts[1] };
      return { hostIp: '', published: '', target: parts[0] };
    }
    return { hostIp: String(entry.host_ip ?? ''), published: String(entry.published ?? ''), target: String(entry.target) };
  });
}

/** v1 prints "source:target:rw"; v2 prints the long syntax. */
function mounts(service: Service): Mount[] {
  return (service.volumes ?? []).map((entry) => {
    if (typeof entry === 'string') {
      const [source, target] = entry.split(':');
      return { source, target };
    }
    return { source: String(entry.source), target: String(entry.target) };
  });
}

function environment(service: Service): Record<string, string> {
  return Object.fromEntries(Object.entries(service.environment ?? {}).map(([k, v]) => [k, v ?? '']));
}

/** The settings the process in a service's container reads: its image's TESP_PROFILE, then its environment. */
function settingsOf(service: Service) {
  return loadSettings({ settingsDir: SETTINGS_DIR, env: { TESP_PROFILE: 'docker', ...environment(service) } });
}

const compose = findCompose();

describeWhen(
  'docker-compose.yaml as Compose resolves it',
  compose !== undefined,
  'neither `docker compose` nor `docker-compose` is installed (Debian: apt-get install docker-compose)',
  () => {
    let services: Record<string, Service>;

    beforeAll(() => {
      const run = composeConfig(compose!, { TESP_RUNNER_TOKEN: TOKEN, TESP_BROKER_PASSWORD: 'br0k3rpw', TESP_STAGING_SECRET: 'st4g1ng' });
      if (run.status !== 0) throw new Error(`${compose!.join(' ')} config exited ${run.status}: ${run.stderr}`);
      services = (yaml.load(run.stdout) as { services: Record<string, Service> }).services;
    });

    it('has the five services, none behind a profile and the API without a container_name (so it scales)', () => {
      expect(Object.keys(services).sort()).toEqual(['api', 'mongo', 'rabbitmq', 'runner', 'runner-amqp']);
      for (const service of Object.values(services)) expect(service.profiles ?? []).toEqual([]);
      expect(services.api.container_name).toBeUndefined();
      expect(services.api.build?.dockerfile).toBe('docker/Dockerfile');
      expect(services.runner.build?.dockerfile).toBe('docker/runner.Dockerfile');
      expect(services.mongo.image).toBe('mongo:7');
      expect(services.rabbitmq.image).toBe('rabbitmq:3');
    });

    it('gives mongo and rabbitmq health checks, and starts the API once mongo is healthy', () => {
      expect(JSON.stringify(services.mongo.healthcheck?.test)).toContain('mongosh');
      expect(JSON.stringify(services.mongo.healthcheck?.test)).toContain('ping');
      expect(services.rabbitmq.healthcheck?.test).toEqual(['CMD', 'rabbitmq-diagnostics', '-q', 'ping']);
      expect(services.api.depends_on).toMatchObject({ mongo: { condition: 'service_healthy' } });
      expect(mounts(services.mongo)).toContainEqual({ source: expect.stringMatching(/mongo-data$/), target: '/data/db' });
    });

    it('publishes nothing beyond the host loopback: only the API, on 127.0.0.1, one port per replica', () => {
      for (const [name, service] of Object.entries(services)) {
        for (const port of ports(service)) expect({ name, hostIp: port.hostIp }).toEqual({ name, hostIp: '127.0.0.1' });
      }
      expect(Object.entries(services).filter(([, s]) => ports(s).length > 0).map(([name]) => name)).toEqual(['api']);
      const [port] = ports(services.api);
      expect(port.target).toBe('8080');
      const [first, last] = port.published.split('-').map(Number);
      expect(first).toBe(8080);
      expect(last).toBeGreaterThanOrEqual(8082);
    });

    it('puts the API on the MongoDB store and sends its tasks to the runner with the token', () => {
      const settings = settingsOf(services.api);
      expect(settings.store.kind).toBe('mongodb');
      expect(settings.store.mongodb.url).toBe('mongodb://mongo:27017/tesp');
      expect(settings.server.host).toBe('0.0.0.0');
      // Without authentication beyond loopback only by explicit choice: the port is published on the host loopback.
      expect([settings.auth.modes, settings.server.allow_unauthenticated_remote]).toEqual([['none'], true]);
      expect(settings.server.port).toBe(8080);
      expect(settings.compute.backend).toBe('pulsar');
      const [runner, centre, ...others] = parseRunnerEntries(settings.compute.pulsar.runners);
      expect(others).toEqual([]);
      expect(runner).toMatchObject({ name: 'runner', baseUrl: 'http://runner:8913', token: TOKEN });
      expect(centre).toMatchObject({ name: 'centre1', transport: 'amqp', baseUrl: 'amqp://tesp:br0k3rpw@rabbitmq:5672/', manager: 'centre1' });
      expect(settings.compute.pulsar.staging_url).toBe('http://api:8080');
      expect(settings.compute.pulsar.staging_secret).toBe('st4g1ng');
      // The API needs no Docker engine: the runner starts the containers.
      expect(mounts(services.api).map((m) => m.target)).not.toContain('/var/run/docker.sock');
      expect(mounts(services.api)).toContainEqual({ source: expect.stringMatching(/api-data$/), target: settings.data_dir });
    });

    it('runs the AMQP runner with no port, on manager queue centre1 of the broker the API names', () => {
      const settings = settingsOf(services['runner-amqp']);
      expect(settings.runner.port).toBe(0);
      expect(settings.runner.amqp).toMatchObject({ url: 'amqp://tesp:br0k3rpw@rabbitmq:5672/', manager: 'centre1' });
      expect(services.rabbitmq.environment).toMatchObject({ RABBITMQ_DEFAULT_USER: 'tesp', RABBITMQ_DEFAULT_PASS: 'br0k3rpw' });
      expect(ports(services['runner-amqp'])).toEqual([]);
    });

    it('gives the runner the Docker socket and its job directories at the same path as on the host', () => {
      const settings = settingsOf(services.runner);
      expect(settings.runner.host).toBe('0.0.0.0');
      expect(settings.runner.port).toBe(8913);
      expect(settings.runner.private_token).toBe(TOKEN);
      expect(settings.compute.local.runtime).toBe('docker');
      const volumes = mounts(services.runner);
      expect(volumes).toContainEqual({ source: settings.compute.local.docker_socket, target: settings.compute.local.docker_socket });
      const jobs = runnerStagingDir(settings);
      const jobMount = volumes.find((m) => jobs === m.target || jobs.startsWith(`${m.target}/`));
      expect(jobMount).toEqual({ source: '/var/lib/tesp-runner', target: '/var/lib/tesp-runner' });
    });

    it('refuses to resolve without TESP_RUNNER_TOKEN, saying which variable to set', () => {
      const run = composeConfig(compose!, { TESP_BROKER_PASSWORD: 'br0k3rpw', TESP_STAGING_SECRET: 'st4g1ng' });
      expect(run.status).not.toBe(0);
      expect(run.stderr).toContain('set TESP_RUNNER_TOKEN');
      expect(run.stdout).not.toContain('runner:8913');
    });
  },
);

describe('settings/docker.yaml', () => {
  const composeEnv = {
    TESP_PROFILE: 'docker',
    TESP_STORE__KIND: 'mongodb',
    TESP_STORE__MONGODB__URL: 'mongodb://mongo:27017/tesp',
    TESP_COMPUTE__BACKEND: 'pulsar',
    TESP_COMPUTE__PULSAR__RUNNERS: `["runner=http://${TOKEN}@runner:8913/"]`,
  };

  it('loads through the real settings loader with the environment docker-compose.yaml gives the API', () => {
    const settings = loadSettings({ env: composeEnv });
    expect(settings.server.host).toBe('0.0.0.0');
    expect(settings.data_dir).toBe('/var/lib/tesp');
    expect(settings.store).toEqual({ kind: 'mongodb', sqlite: { file: 'tesp.sqlite' }, mongodb: { url: 'mongodb://mongo:27017/tesp', url_file: '', server_selection_timeout_ms: 5000 }, full_page_bytes: 16 * 1024 * 1024 });
    expect(settings.compute.backend).toBe('pulsar');
    expect(parseRunnerEntries(settings.compute.pulsar.runners)).toEqual([expect.objectContaining({ name: 'runner', token: TOKEN })]);
    expect(settings.storage.file.allowed_dirs).toEqual(['/data']);
  });

  it('sets the MongoDB store and the pulsar backend by itself, without the environment', () => {
    const settings = loadSettings({ env: { TESP_PROFILE: 'docker' } });
    expect(settings.store.kind).toBe('mongodb');
    expect(settings.store.mongodb.url).toBe('mongodb://mongo:27017/tesp');
    expect(settings.compute.backend).toBe('pulsar');
    // The runner entries carry tokens: they come from the environment only.
    expect(settings.compute.pulsar.runners).toEqual([]);
  });

  it('loads for tesp runner with the environment docker-compose.yaml gives the runner', () => {
    const settings = loadSettings({
      env: { TESP_PROFILE: 'docker', TESP_DATA_DIR: '/var/lib/tesp-runner', TESP_RUNNER__HOST: '0.0.0.0', TESP_RUNNER__PRIVATE_TOKEN: TOKEN },
    });
    expect(runnerStagingDir(settings)).toBe('/var/lib/tesp-runner/runner/jobs');
    expect(settings.runner.private_token).toBe(TOKEN);
  });
});

describe('the Dockerfiles', () => {
  const read = (name: string) => readFileSync(path.join(ROOT, 'docker', name), 'utf8');
  /** Instructions of a stage (comments and blank lines left out). */
  const stage = (dockerfile: string, index: number) =>
    dockerfile.split(/^FROM /m).slice(1)[index].split('\n').slice(1).filter((line) => line.trim() !== '' && !line.startsWith('#'));
  const api = read('Dockerfile');
  const runner = read('runner.Dockerfile');

  it('share one build stage, instruction for instruction (so the second build reuses its cache)', () => {
    expect(api).toMatch(/^FROM node:20-bookworm-slim AS build$/m);
    expect(runner).toMatch(/^FROM node:20-bookworm-slim AS build$/m);
    expect(stage(runner, 0)).toEqual(stage(api, 0));
  });

  it('run the API as the node user without bash or the docker CLI, and the runner with the docker CLI alone', () => {
    const apiFinal = stage(api, 1).join('\n');
    expect(apiFinal).toMatch(/^USER node$/m);
    expect(apiFinal).not.toMatch(/docker\.io|docker-cli/);
    const runnerStages = runner.split(/^FROM /m).slice(1);
    const runnerFinal = runnerStages[runnerStages.length - 1];
    expect(runnerFinal).toContain('COPY --from=docker-cli /usr/bin/docker /usr/bin/docker');
    expect(runnerFinal).not.toMatch(/apt-get install/);
    expect(runnerFinal).not.toMatch(/^USER /m);
  });

  it('check health on service-info and /healthz, with a script that goes into both images', () => {
    expect(api).toContain('HEALTHCHECK');
    expect(api).toMatch(/CMD \["node", "docker\/healthcheck\.js", "api"\]/);
    expect(runner).toMatch(/CMD \["node", "docker\/healthcheck\.js", "runner"\]/);
    expect(read('healthcheck.js')).toContain('/ga4gh/tes/v1/service-info');
    expect(read('healthcheck.js')).toContain('/healthz');
    const ignored = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8').split('\n').filter((l) => l.trim() && !l.startsWith('#'));
    for (const copied of ['docker/healthcheck.js', 'src', 'settings', 'openapi', 'package.json', 'package-lock.json']) {
      expect(ignored.filter((pattern) => copied === pattern || copied.startsWith(`${pattern}/`))).toEqual([]);
    }
  });
});

// Docker executors run as a non-root user with no capabilities and no new privileges; compute.local.run_as_root
// gives images that need it root back. Outputs written by the non-root executor still reach their destination.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { dockerAvailable } from '../e2e/service-process';
import { InProcessApp, startInProcessApp } from '../support/in-process-app';
import { runTask } from '../support/run-task';
import { describeWhen } from '../support/service-check';

const USER_IMAGE = `tesp-test-own-user:${process.pid}`;
const PROBE = ['sh', '-c', 'echo "uid=$(id -u) gid=$(id -g)"; grep -E "^(CapEff|NoNewPrivs):" /proc/self/status; echo made > /out/made.txt; cd /work && echo here > here.txt'];

const probeTask = (image: string, outDir: string) => ({
  executors: [{ image, command: PROBE, workdir: '/work' }],
  outputs: [
    { path: '/out/made.txt', url: path.join(outDir, 'made.txt'), type: 'FILE' },
    { path: '/work/here.txt', url: path.join(outDir, 'here.txt'), type: 'FILE' },
  ],
  volumes: ['/work'],
});

describeWhen('executor identity in Docker', dockerAvailable(), 'no Docker engine answers on /var/run/docker.sock (run docker/start-dockerd.sh)', () => {
  let outDir: string;
  let app: InProcessApp | undefined;

  beforeAll(() => {
    outDir = mkdtempSync(path.join(os.tmpdir(), 'tesp-identity-'));
    // An image whose own USER is not root, made from alpine without a registry.
    const container = execFileSync('docker', ['create', 'alpine:latest', 'true'], { encoding: 'utf8' }).trim();
    execFileSync('docker', ['commit', '--change', 'USER 4321:4321', container, USER_IMAGE], { stdio: 'ignore' });
    execFileSync('docker', ['rm', container], { stdio: 'ignore' });
  });

  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  afterAll(() => {
    rmSync(outDir, { recursive: true, force: true });
    execFileSync('docker', ['rmi', '-f', USER_IMAGE], { stdio: 'ignore' });
  });

  const start = (extra: Record<string, unknown> = {}) =>
    startInProcessApp({ 'scheduler.poll_interval_ms': 50, 'compute.local.pull_images': false, 'storage.file.allowed_dirs': [outDir], ...extra });

  it('runs an image without a USER as nobody (or as tesp\'s own user), with no effective capabilities and no new privileges, and collects its outputs', async () => {
    app = await start();
    const task = await runTask(app, probeTask('alpine:latest', path.join(outDir, 'nobody')));
    expect(task.state).toBe('COMPLETE');
    const stdout: string = task.logs[0].logs[0].stdout;
    // nobody under a root tesp (as here); a non-root tesp gives executors its own ids.
    const own = process.getuid!() === 0 ? '65534 gid=65534' : `${process.getuid!()} gid=${process.getgid!()}`;
    expect(stdout).toContain(`uid=${own}`);
    expect(stdout).toMatch(/^CapEff:\s+0000000000000000$/m);
    expect(stdout).toMatch(/^NoNewPrivs:\s+1$/m);
    expect(readFileSync(path.join(outDir, 'nobody', 'made.txt'), 'utf8')).toBe('made\n');
    expect(readFileSync(path.join(outDir, 'nobody', 'here.txt'), 'utf8')).toBe('here\n');
  });

  it("runs an image as its own non-root USER, and as compute.local.executor_user when it has none", async () => {
    app = await start({ 'compute.local.executor_user': '2345:2345' });
    const own = await runTask(app, probeTask(USER_IMAGE, path.join(outDir, 'own')));
    expect(own.state).toBe('COMPLETE');
    expect(own.logs[0].logs[0].stdout).toContain('uid=4321 gid=4321');
    const configured = await runTask(app, probeTask('alpine:latest', path.join(outDir, 'configured')));
    expect(configured.state).toBe('COMPLETE');
    expect(configured.logs[0].logs[0].stdout).toContain('uid=2345 gid=2345');
    expect(configured.logs[0].logs[0].stdout).toMatch(/^CapEff:\s+0000000000000000$/m);
  });

  it('gives root back with compute.local.run_as_root, still without new privileges', async () => {
    app = await start({ 'compute.local.run_as_root': true });
    const task = await runTask(app, probeTask('alpine:latest', path.join(outDir, 'root')));
    expect(task.state).toBe('COMPLETE');
    const stdout: string = task.logs[0].logs[0].stdout;
    expect(stdout).toContain('uid=0 gid=0');
    expect(stdout).not.toMatch(/^CapEff:\s+0000000000000000$/m);
    expect(stdout).toMatch(/^NoNewPrivs:\s+1$/m);
  });
});

// Start-up as an operator meets it: the built service (dist/main.js) refuses bad settings with one structured
// line that names the setting, where the value came from and never a secret.
import { rmSync } from 'node:fs';
import { runServiceUntilExit, ServiceProcess } from './service-process';

/** Runs tesp with these variables until it exits; resolves to its exit code and output lines. */
async function runTesp(env: Record<string, string>): Promise<{ code: number | null; lines: string[] }> {
  const { code, output } = await runServiceUntilExit(env);
  return { code, lines: output.split('\n').filter(Boolean) };
}

describe('start-up', () => {
  const dataDir = ServiceProcess.tempDataDir();

  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('refuses a TESP_ variable that names no setting, with one pino line naming it and the setting meant', async () => {
    const { code, lines } = await runTesp({ TESP_DATA_DIR: dataDir, TESP_SERVER__PROT: '9999' });
    expect(code).toBe(1);
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0])).toMatchObject({
      level: 60,
      service: 'tesp',
      msg: 'invalid settings: environment variable TESP_SERVER__PROT names no setting; did you mean TESP_SERVER__PORT?',
    });
  });

  it('refuses a malformed storage entry the same way, naming the variable and never the secret', async () => {
    const { code, lines } = await runTesp({ TESP_DATA_DIR: dataDir, TESP_STORAGE__FTP__CREDENTIALS: 'ftp.example.org=only-a-s3cret-no-user' });
    expect(code).toBe(1);
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0]);
    expect(line.level).toBe(60);
    expect(line.msg).toBe(
      'invalid settings: setting "storage.ftp.credentials" (from environment variable TESP_STORAGE__FTP__CREDENTIALS): the entry for "ftp.example.org" is not host[:port]=user:password',
    );
    expect(lines.join('\n')).not.toContain('s3cret');
  });
  it('refuses to listen beyond loopback without authentication unless allowed, naming both settings', async () => {
    const { code, lines } = await runTesp({ TESP_DATA_DIR: dataDir, TESP_SERVER__HOST: '0.0.0.0', TESP_SERVER__PORT: '0' });
    expect(code).toBe(1);
    const line = JSON.parse(lines.at(-1)!);
    expect(line.level).toBe(60);
    expect(line.msg).toMatch(/^invalid settings: server.host is 0.0.0.0, beyond loopback, and auth.modes is \[none\].*server.allow_unauthenticated_remote: true/);
  });

  it('listens beyond loopback without authentication when allowed explicitly, with a warning', async () => {
    const service = new ServiceProcess(ServiceProcess.tempDataDir(), { TESP_SERVER__HOST: '0.0.0.0', TESP_SERVER__ALLOW_UNAUTHENTICATED_REMOTE: 'true' });
    try {
      await service.start();
      const warning = service.output.split('\n').filter(Boolean).map((line) => JSON.parse(line)).find((line) => line.level === 40);
      expect(warning).toMatchObject({ host: '0.0.0.0', msg: expect.stringMatching(/^listening beyond loopback without authentication/) });
    } finally {
      await service.stop();
      service.cleanup();
    }
  });

  it('refuses a malformed htpasswd entry naming its index, never its hash', async () => {
    const good = '$2y$05$' + 'a'.repeat(53);
    const { code, lines } = await runTesp({ TESP_DATA_DIR: dataDir, TESP_AUTH__MODES: 'basic', TESP_AUTH__BASIC__USERS: `alice:${good},bob:$2y$05$t00-sh0rt-s3cret` });
    expect(code).toBe(1);
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]).msg).toBe(
      'invalid settings: setting "auth.basic.users" (from environment variable TESP_AUTH__BASIC__USERS): entry 1 is not name:$2y$... (a bcrypt line as `htpasswd -nbB name password` writes it)',
    );
    expect(lines.join('\n')).not.toContain('s3cret');
  });
});

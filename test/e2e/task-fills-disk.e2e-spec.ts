// A task that fills the disk its task directory is on (data_dir, here a small tmpfs that also holds the store) ends
// SYSTEM_ERROR saying so, with the directory, once space is back: not as a run "lost" to a restart that never was.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describeWhen } from '../support/service-check';
import { mountTmpfs, tmpfsUnavailable, unmount } from '../support/small-file-system';
import { ServiceProcess } from './service-process';

const cannotMount = tmpfsUnavailable();

describeWhen('a task that fills the data directory\'s disk', cannotMount === undefined, cannotMount ?? '', () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'tesp-fill-'));
  const inputs = mkdtempSync(path.join(os.tmpdir(), 'tesp-fill-inputs-'));
  let service: ServiceProcess;

  beforeAll(async () => {
    mountTmpfs(dataDir, 8 * 1024);
    // Larger than the whole data directory: staging it cannot fit.
    writeFileSync(path.join(inputs, 'big.bin'), Buffer.alloc(12 * 1024 * 1024, 1));
    service = new ServiceProcess(dataDir, {
      TESP_COMPUTE__LOCAL__RUNTIME: 'process',
      TESP_STORAGE__FILE__ALLOWED_DIRS: inputs,
    });
    await service.start();
  });

  afterAll(async () => {
    await service.stop('SIGKILL');
    unmount(dataDir);
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(inputs, { recursive: true, force: true });
  });

  const expectNoSpaceEnd = (task: any, id: string) => {
    expect(task.state).toBe('SYSTEM_ERROR');
    const logs: string[] = task.logs.flatMap((log: { system_logs?: string[] }) => log.system_logs ?? []);
    const taskDir = path.join(dataDir, 'work', id);
    expect(logs.some((line) => /no space left on device/i.test(line) && line.includes(taskDir))).toBe(true);
    expect(logs.join('\n')).not.toMatch(/cannot adopt|was lost|taken over/);
  };

  it('ends SYSTEM_ERROR with "no space left on device" and the task directory when an input does not fit', async () => {
    const id = await service.createTask({
      inputs: [{ url: `file://${path.join(inputs, 'big.bin')}`, path: '/in/big.bin' }],
      executors: [{ image: 'alpine', command: ['true'] }],
    });
    expectNoSpaceEnd(await service.waitFor(id), id);
  });

  it('ends SYSTEM_ERROR the same way when an executor fills the disk with what it writes', async () => {
    const id = await service.createTask({ executors: [{ image: 'alpine', command: ['sh', '-c', 'cat /dev/zero > filler; sleep 5; exit 1'] }] });
    expectNoSpaceEnd(await service.waitFor(id), id);
    // The store shared the full disk: it refused writes meanwhile (the lease lapsed), and takes creates again.
    expect(service.output).toContain('the task store is full');
    await service.createTask({ executors: [{ image: 'alpine', command: ['true'] }] });
  });
});

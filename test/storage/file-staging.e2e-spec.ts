// File storage confinement and the staging service on real temporary directories.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildExecutionPlan } from '../../src/compute/execution-plan';
import { FileStorageBackend } from '../../src/storage/file/file-storage.backend';
import { StagingService } from '../../src/storage/staging.service';
import { StorageRegistry } from '../../src/storage/storage-registry';
import { TaskRecord, TesState } from '../../src/tasks/tes-task';

describe('file storage and staging', () => {
  let allowed: string;
  let outside: string;
  let work: string;
  let registry: StorageRegistry;
  let staging: StagingService;

  beforeEach(() => {
    allowed = mkdtempSync(path.join(os.tmpdir(), 'tesp-allowed-'));
    outside = mkdtempSync(path.join(os.tmpdir(), 'tesp-outside-'));
    work = mkdtempSync(path.join(os.tmpdir(), 'tesp-work-'));
    registry = new StorageRegistry([new FileStorageBackend([allowed])]);
    staging = new StagingService(registry);
  });

  afterEach(() => {
    for (const dir of [allowed, outside, work]) rmSync(dir, { recursive: true, force: true });
  });

  const task = (overrides: Partial<TaskRecord>): TaskRecord => ({
    id: 't1',
    state: TesState.INITIALIZING,
    creation_time: new Date().toISOString(),
    executors: [],
    logs: [],
    ...overrides,
  });

  it('refuses paths outside the allowed directories, with .. and through symlinks', async () => {
    writeFileSync(path.join(outside, 'secret.txt'), 'no');
    symlinkSync(outside, path.join(allowed, 'link'));
    expect(await registry.validateUrl(path.join(outside, 'secret.txt'))).toMatch(/outside the allowed directories/);
    expect(await registry.validateUrl(`file://${allowed}/../${path.basename(outside)}/secret.txt`)).toMatch(/outside the allowed directories/);
    expect(await registry.validateUrl(path.join(allowed, 'link', 'secret.txt'))).toMatch(/outside the allowed directories/);
    expect(await registry.validateUrl(path.join(allowed, 'new', 'file.txt'))).toBeUndefined();
    expect(await registry.validateUrl('relative/path')).toMatch(/neither a URL nor an absolute path/);
    expect(await registry.validateUrl('s3://bucket/key')).toMatch(/"s3:" is not served \(enabled: file\)/);
  });

  it('stages content, FILE and DIRECTORY inputs, and DIRECTORY and glob outputs', async () => {
    mkdirSync(path.join(allowed, 'indir/sub'), { recursive: true });
    writeFileSync(path.join(allowed, 'indir/a.txt'), 'A');
    writeFileSync(path.join(allowed, 'indir/sub/b.txt'), 'BB');
    writeFileSync(path.join(allowed, 'single.txt'), 'single');
    const content = 'c'.repeat(200 * 1024);
    const plan = buildExecutionPlan(
      task({
        inputs: [
          { path: '/in/content.txt', content, type: 'FILE' },
          { path: '/in/single.txt', url: path.join(allowed, 'single.txt'), type: 'FILE' },
          { path: '/in/dir', url: pathToFileURL(path.join(allowed, 'indir')).toString(), type: 'DIRECTORY' },
        ],
        outputs: [
          { path: '/out/results', url: pathToFileURL(path.join(allowed, 'results')).toString(), type: 'DIRECTORY' },
          { path: '/out/*.log', path_prefix: '/out', url: path.join(allowed, 'logs'), type: 'FILE' },
          { path: '/out/*.none', path_prefix: '/out', url: path.join(allowed, 'none'), type: 'FILE' },
        ],
      }),
      work,
    );
    const notes: string[] = [];
    await staging.stageInputs(plan, { log: (m) => notes.push(m) });
    const root = plan.rootDir;
    expect(readFileSync(path.join(root, 'in/content.txt'), 'utf8')).toBe(content);
    expect(readFileSync(path.join(root, 'in/single.txt'), 'utf8')).toBe('single');
    expect(readFileSync(path.join(root, 'in/dir/sub/b.txt'), 'utf8')).toBe('BB');

    mkdirSync(path.join(root, 'out/results/deep'), { recursive: true });
    writeFileSync(path.join(root, 'out/results/deep/r.txt'), 'result');
    writeFileSync(path.join(root, 'out/run.log'), 'log1');
    writeFileSync(path.join(root, 'out/other.txt'), 'ignored');
    const { outputs: logs, checksums } = await staging.stageOutputs(plan, { log: (m) => notes.push(m) });
    expect(checksums).toEqual({
      'sha256:/out/results/deep/r.txt': createHash('sha256').update('result').digest('hex'),
      'sha256:/out/run.log': createHash('sha256').update('log1').digest('hex'),
    });
    expect(logs.sort((a, b) => a.path.localeCompare(b.path))).toEqual([
      { url: pathToFileURL(path.join(allowed, 'results')).toString() + '/deep/r.txt', path: '/out/results/deep/r.txt', size_bytes: '6' },
      { url: path.join(allowed, 'logs', 'run.log'), path: '/out/run.log', size_bytes: '4' },
    ]);
    expect(readFileSync(path.join(allowed, 'results/deep/r.txt'), 'utf8')).toBe('result');
    expect(readFileSync(path.join(allowed, 'logs/run.log'), 'utf8')).toBe('log1');
    expect(notes).toEqual(['outputs[2]: /out/*.none matched no files']);
  });

  it('names the output when a FILE output is missing', async () => {
    const plan = buildExecutionPlan(task({ outputs: [{ path: '/out/missing.txt', url: path.join(allowed, 'm.txt'), type: 'FILE' }] }), work);
    await staging.stageInputs(plan);
    await expect(staging.stageOutputs(plan)).rejects.toThrow(/outputs\[0\] \(\/out\/missing\.txt .*\) failed: \/out\/missing\.txt does not exist/);
  });

  it('names the input when it cannot be fetched', async () => {
    const plan = buildExecutionPlan(task({ inputs: [{ path: '/in/x', url: path.join(allowed, 'absent.txt'), type: 'FILE' }] }), work);
    await expect(staging.stageInputs(plan)).rejects.toThrow(/staging inputs\[0\] .* to \/in\/x failed: .*no such file/);
  });
});

// File storage confinement and the staging service on real temporary directories.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildExecutionPlan, taskLayout } from '../../src/engine/execution-plan';
import { FileStorageBackend } from '../../src/storage/file/file-storage.backend';
import { Staging } from '../../src/engine/staging';
import { StorageRegistry } from '../../src/storage/storage-registry';
import { TaskRecord, TesState } from '../../src/domain/tes-task';

describe('file storage and staging', () => {
  let allowed: string;
  let outside: string;
  let work: string;
  /** Where the plans of a test run: the temporary work directory. */
  const layout = () => taskLayout(work);
  let registry: StorageRegistry;
  let staging: Staging;

  beforeEach(() => {
    allowed = mkdtempSync(path.join(os.tmpdir(), 'tesp-allowed-'));
    outside = mkdtempSync(path.join(os.tmpdir(), 'tesp-outside-'));
    work = mkdtempSync(path.join(os.tmpdir(), 'tesp-work-'));
    registry = new StorageRegistry([new FileStorageBackend([allowed])]);
    staging = new Staging(registry);
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
    expect(await registry.validateUrl('gopher://host/x')).toMatch(/"gopher:" is not served \(enabled: file\)/);
    // A scheme tesp knows but this server has not configured passes at creation and fails at staging, saying what to set.
    expect(await registry.validateUrl('s3://bucket/key')).toBeUndefined();
    expect(() => registry.forUrl('s3://bucket/key')).toThrow(/"s3:" is not configured on this server \(set storage\.s3\.enabled/);
    expect(await registry.validateUrl('s3://')).toMatch(/has no host/);
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
          { path: '/in/empty.txt', content: '', type: 'FILE' },
          { path: '/in/single.txt', url: path.join(allowed, 'single.txt'), type: 'FILE' },
          { path: '/in/dir', url: pathToFileURL(path.join(allowed, 'indir')).toString(), type: 'DIRECTORY' },
        ],
        outputs: [
          { path: '/out/results', url: pathToFileURL(path.join(allowed, 'results')).toString(), type: 'DIRECTORY' },
          { path: '/out/*.log', path_prefix: '/out', url: path.join(allowed, 'logs'), type: 'FILE' },
          { path: '/out/*.none', path_prefix: '/out', url: path.join(allowed, 'none'), type: 'FILE' },
        ],
      }),
    );
    const notes: string[] = [];
    await staging.stageInputs(plan, layout(), { log: (m) => notes.push(m) });
    const root = layout().rootDir;
    expect(readFileSync(path.join(root, 'in/content.txt'), 'utf8')).toBe(content);
    expect(readFileSync(path.join(root, 'in/empty.txt'), 'utf8')).toBe('');
    expect(readFileSync(path.join(root, 'in/single.txt'), 'utf8')).toBe('single');
    expect(readFileSync(path.join(root, 'in/dir/sub/b.txt'), 'utf8')).toBe('BB');

    mkdirSync(path.join(root, 'out/results/deep'), { recursive: true });
    writeFileSync(path.join(root, 'out/results/deep/r.txt'), 'result');
    writeFileSync(path.join(root, 'out/run.log'), 'log1');
    writeFileSync(path.join(root, 'out/other.txt'), 'ignored');
    const { outputs: logs, checksums } = await staging.stageOutputs(plan, layout(), { log: (m) => notes.push(m) });
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

  it('lists a directory holding a link back to itself once, without walking in circles', async () => {
    mkdirSync(path.join(allowed, 'tree/sub'), { recursive: true });
    writeFileSync(path.join(allowed, 'tree/sub/f.txt'), 'f');
    writeFileSync(path.join(allowed, 'target.txt'), 'linked');
    symlinkSync('..', path.join(allowed, 'tree/sub/up'));
    symlinkSync(path.join(allowed, 'target.txt'), path.join(allowed, 'tree/link.txt'));
    const listed = await registry.forUrl(path.join(allowed, 'tree')).list(path.join(allowed, 'tree'));
    expect(listed.map((entry) => [entry.relativePath, entry.size])).toEqual([
      ['link.txt', 6],
      ['sub/f.txt', 1],
    ]);
  });

  it('follows links among outputs as the container sees them, never to other host files', async () => {
    mkdirSync(path.join(allowed, 'indir'), { recursive: true });
    writeFileSync(path.join(allowed, 'indir/a.txt'), 'A');
    writeFileSync(path.join(allowed, 'single.txt'), 'single');
    writeFileSync(path.join(outside, 'secret.txt'), 'host secret');
    const plan = buildExecutionPlan(
      task({
        inputs: [
          { path: '/in/single.txt', url: path.join(allowed, 'single.txt'), type: 'FILE' },
          { path: '/in/dir', url: path.join(allowed, 'indir'), type: 'DIRECTORY' },
        ],
        outputs: [
          { path: '/out/copy.txt', url: path.join(allowed, 'up/copy.txt'), type: 'FILE' },
          { path: '/out/results', url: path.join(allowed, 'up/results'), type: 'DIRECTORY' },
          { path: '/out/*.lnk', path_prefix: '/out', url: path.join(allowed, 'up/glob'), type: 'FILE' },
        ],
      }),
    );
    await staging.stageInputs(plan, layout());
    const root = layout().rootDir;
    mkdirSync(path.join(root, 'out/results'), { recursive: true });
    symlinkSync('/in/single.txt', path.join(root, 'out/copy.txt')); // absolute in the container: the input
    writeFileSync(path.join(root, 'out/results/own.txt'), 'own');
    symlinkSync('/in/dir', path.join(root, 'out/results/data'));
    symlinkSync('/out/results', path.join(root, 'out/results/loop'));
    symlinkSync(path.join(outside, 'secret.txt'), path.join(root, 'out/results/host.txt'));
    symlinkSync('../../../../../../../../..' + path.join(outside, 'secret.txt'), path.join(root, 'out/results/climb.txt'));
    symlinkSync('results/own.txt', path.join(root, 'out/one.lnk'));
    symlinkSync(path.join(outside, 'secret.txt'), path.join(root, 'out/two.lnk'));
    const notes: string[] = [];
    const { outputs } = await staging.stageOutputs(plan, layout(), { log: (m) => notes.push(m) });
    expect(outputs.map((o) => [o.path, o.size_bytes]).sort()).toEqual([
      ['/out/copy.txt', '6'],
      ['/out/one.lnk', '3'],
      ['/out/results/data/a.txt', '1'],
      ['/out/results/own.txt', '3'],
    ]);
    expect(readFileSync(path.join(allowed, 'up/copy.txt'), 'utf8')).toBe('single');
    expect(readFileSync(path.join(allowed, 'up/results/data/a.txt'), 'utf8')).toBe('A');
    expect(readFileSync(path.join(allowed, 'up/glob/one.lnk'), 'utf8')).toBe('own');
    expect(notes.sort()).toEqual([
      'outputs[1]: /out/results/climb.txt is a symbolic link that leads nowhere inside the task; skipped',
      'outputs[1]: /out/results/host.txt is a symbolic link that leads nowhere inside the task; skipped',
      'outputs[1]: /out/results/loop links back to /out/results; not followed',
    ]);

    // A FILE output that is a link to a host path fails as missing: the host file is never read.
    const escape = buildExecutionPlan(task({ outputs: [{ path: '/out/x.txt', url: path.join(allowed, 'x.txt'), type: 'FILE' }] }));
    rmSync(layout().rootDir, { recursive: true, force: true });
    await staging.stageInputs(escape, layout());
    symlinkSync(path.join(outside, 'secret.txt'), path.join(layout().rootDir, 'out/x.txt'));
    await expect(staging.stageOutputs(escape, layout())).rejects.toThrow(/\/out\/x\.txt does not exist/);
  });

  it('names the output when a FILE output is missing', async () => {
    const plan = buildExecutionPlan(task({ outputs: [{ path: '/out/missing.txt', url: path.join(allowed, 'm.txt'), type: 'FILE' }] }));
    await staging.stageInputs(plan, layout());
    await expect(staging.stageOutputs(plan, layout())).rejects.toThrow(/outputs\[0\] \(\/out\/missing\.txt .*\) failed: \/out\/missing\.txt does not exist/);
  });

  it('names the input when it cannot be fetched', async () => {
    const plan = buildExecutionPlan(task({ inputs: [{ path: '/in/x', url: path.join(allowed, 'absent.txt'), type: 'FILE' }] }));
    await expect(staging.stageInputs(plan, layout())).rejects.toThrow(/staging inputs\[0\] .* to \/in\/x failed: .*no such file/);
  });
});

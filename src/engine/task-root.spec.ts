import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeDirInRoot, openInRootForReading, openInRootForWriting, openToEveryUser, resolveInRoot } from './task-root';

describe('paths in the task root', () => {
  let dir: string;
  let root: string;
  let outside: string;

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'tesp-root-'));
    root = path.join(dir, 'root');
    outside = path.join(dir, 'outside');
    mkdirSync(path.join(root, 'io'), { recursive: true });
    mkdirSync(outside);
    writeFileSync(path.join(outside, 'secret'), 'host secret');
    writeFileSync(path.join(root, 'io', 'data'), 'task data');
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('makes a directory and its parents inside the root, and none through a planted link', async () => {
    await makeDirInRoot(root, '/io/work/deeper');
    expect(statSync(path.join(root, 'io', 'work', 'deeper')).isDirectory()).toBe(true);
    symlinkSync(outside, path.join(root, 'io', 'planted'));
    // Linux answers ENOTDIR or ELOOP for a link opened with O_DIRECTORY|O_NOFOLLOW.
    await expect(makeDirInRoot(root, '/io/planted/made')).rejects.toMatchObject({ code: expect.stringMatching(/^(ELOOP|ENOTDIR)$/) });
    symlinkSync(path.join(outside, 'gone'), path.join(root, 'io', 'dangling'));
    await expect(makeDirInRoot(root, '/io/dangling/made')).rejects.toMatchObject({ code: expect.stringMatching(/^(ELOOP|ENOTDIR)$/) });
    expect(() => statSync(path.join(outside, 'made'))).toThrow();
    expect(() => statSync(path.join(outside, 'gone'))).toThrow();
    await expect(makeDirInRoot(root, '/io/data/under-a-file')).rejects.toMatchObject({ code: 'ENOTDIR' });
  });

  it('resolves links as the container sees them, never to a host path', async () => {
    symlinkSync('/io/data', path.join(root, 'io', 'alias'));
    symlinkSync(path.join(outside, 'secret'), path.join(root, 'io', 'escape'));
    expect((await resolveInRoot(root, '/io/alias'))?.hostPath).toBe(path.join(root, 'io', 'data'));
    // The absolute host path is read as a path inside the root, where nothing is.
    expect(await resolveInRoot(root, '/io/escape')).toBeUndefined();
  });

  it('reads stdin through a link inside the task, and not through one that leads out of it', async () => {
    symlinkSync('data', path.join(root, 'io', 'in'));
    const handle = await openInRootForReading(root, '/io/in');
    expect((await handle.readFile()).toString()).toBe('task data');
    await handle.close();
    symlinkSync(path.join(outside, 'secret'), path.join(root, 'io', 'planted'));
    await expect(openInRootForReading(root, '/io/planted')).rejects.toThrow('/io/planted does not exist in the task');
    symlinkSync('../../outside/secret', path.join(root, 'io', 'relative'));
    await expect(openInRootForReading(root, '/io/relative')).rejects.toThrow(/does not exist in the task/);
  });

  it('writes stdout into the task, never through a link at its path', async () => {
    const handle = await openInRootForWriting(root, '/io/out');
    await handle.writeFile('result');
    await handle.close();
    expect(readFileSync(path.join(root, 'io', 'out'), 'utf8')).toBe('result');
    symlinkSync(path.join(outside, 'secret'), path.join(root, 'io', 'log'));
    await expect(openInRootForWriting(root, '/io/log')).rejects.toThrow('/io/log is a symbolic link');
    expect(readFileSync(path.join(outside, 'secret'), 'utf8')).toBe('host secret');
  });

  it('writes under a linked directory only where the link stays inside the task', async () => {
    symlinkSync('/io', path.join(root, 'logs'));
    const handle = await openInRootForWriting(root, '/logs/err');
    await handle.close();
    expect(readFileSync(path.join(root, 'io', 'err'), 'utf8')).toBe('');
    symlinkSync(outside, path.join(root, 'away'));
    await expect(openInRootForWriting(root, '/away/new-file')).rejects.toThrow('its directory /away does not exist in the task');
    expect(() => readFileSync(path.join(outside, 'new-file'))).toThrow(/ENOENT/);
  });

  it('truncates an existing stdout file it may write', async () => {
    writeFileSync(path.join(root, 'io', 'old'), 'a long earlier content');
    const handle = await openInRootForWriting(root, '/io/old');
    await handle.writeFile('new');
    await handle.close();
    expect(readFileSync(path.join(root, 'io', 'old'), 'utf8')).toBe('new');
  });

  it('opens a directory of the task to every user, never one outside it through a link the task made', async () => {
    chmodSync(outside, 0o755);
    mkdirSync(path.join(root, 'io', 'work'));
    symlinkSync(outside, path.join(root, 'io', 'host-abs'));
    symlinkSync(path.relative(path.join(root, 'io'), outside), path.join(root, 'io', 'host-rel'));
    await openToEveryUser(root, '/io/work');
    for (const link of ['/io/host-abs', '/io/host-rel', '/io/host-rel/..', '/io/data', '/io/missing']) await openToEveryUser(root, link);
    expect(statSync(path.join(root, 'io', 'work')).mode & 0o777).toBe(0o777);
    expect(statSync(outside).mode & 0o777).toBe(0o755);
    expect(statSync(dir).mode & 0o777).not.toBe(0o777);
  });
});

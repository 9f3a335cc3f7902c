import { mkdtempSync, promises as fs, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ExecutorOutput, TailBuffer } from './executor-output';

describe('TailBuffer', () => {
  it('keeps the last bytes across many chunks', () => {
    const tail = new TailBuffer(10);
    for (let i = 0; i < 100; i++) tail.push(Buffer.from(`${i},`));
    expect(tail.text()).toBe('96,97,98,99,'.slice(-10));
  });

  it('drops a character the cut broke instead of showing half of it', () => {
    const tail = new TailBuffer(5);
    tail.push(Buffer.from('ééé')); // 6 bytes: the cut falls inside the first é
    expect(tail.text()).toBe('éé');
  });

  it('stays within the limit in UTF-8 even when the bytes are not text', () => {
    const tail = new TailBuffer(8);
    tail.push(Buffer.from([0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa, 0x41, 0x42]));
    const text = tail.text();
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(8);
    expect(text.endsWith('AB')).toBe(true);
  });
});

describe('ExecutorOutput', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'tesp-output-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('writes the whole stream to the file, the tail to the log, and reports changes once', async () => {
    const file = path.join(dir, 'stdout.txt');
    const output = new ExecutorOutput(4, { stdout: await fs.open(file, 'w') });
    await new Promise<void>((resolve) => output.stdout.write(Buffer.from('abcdef'), () => resolve()));
    expect(output.takeChanges()).toEqual({ stdout: 'cdef', stderr: '' });
    expect(output.takeChanges()).toBeUndefined();
    expect(await output.close()).toBeUndefined();
    expect(readFileSync(file, 'utf8')).toBe('abcdef');
  });

  it('writes stdout and stderr named as the same file into that one file', async () => {
    const file = path.join(dir, 'both.txt');
    const handle = await fs.open(file, 'w');
    const output = new ExecutorOutput(64, { stdout: handle, stderr: handle });
    await new Promise<void>((resolve) => output.stdout.write(Buffer.from('out\n'), () => resolve()));
    await new Promise<void>((resolve) => output.stderr.write(Buffer.from('err\n'), () => resolve()));
    await output.close();
    expect(readFileSync(file, 'utf8')).toBe('out\nerr\n');
  });

  it('keeps the tails going when the file cannot be written, and says why on close', async () => {
    // A handle that cannot be written stands in for a full disk.
    const file = path.join(dir, 'read-only.txt');
    writeFileSync(file, '');
    const output = new ExecutorOutput(16, { stdout: await fs.open(file, 'r') });
    await new Promise<void>((resolve) => output.stdout.write(Buffer.from('still here'), () => resolve()));
    expect((await output.close())?.message).toMatch(/EBADF/);
    expect(output.snapshot().stdout).toBe('still here');
  });
});

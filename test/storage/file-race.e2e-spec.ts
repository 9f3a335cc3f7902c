// A process that swaps a symbolic link in an allowed directory between a target inside and one outside, while
// file:// inputs and outputs go through it, never makes tesp read or write outside the allowed directories.
import { ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FileStorageBackend } from '../../src/storage/file/file-storage.backend';

const ATTEMPTS = 100;

/**
 * Flips `<allowed>/f` between a regular file (inside) and a link to `<outside>/secret.txt`, and `<allowed>/d`
 * between a real directory and a link to `<outside>/tree`: what a path check sees is not what a later open by
 * path gets. Resolves once it has flipped both a few times.
 */
async function startRacer(allowed: string, outside: string): Promise<ChildProcess> {
  const script = `
    const fs = require('node:fs');
    const [allowed, outside] = process.argv.slice(1);
    const f = allowed + '/f', d = allowed + '/d', real = allowed + '/d.real';
    const quietly = (work) => { try { work(); } catch {} };
    for (let i = 0; ; i++) {
      quietly(() => { fs.writeFileSync(f + '.tmp', 'INSIDE'); fs.renameSync(f + '.tmp', f); });
      quietly(() => { fs.rmSync(f + '.lnk', { force: true }); fs.symlinkSync(outside + '/secret.txt', f + '.lnk'); fs.renameSync(f + '.lnk', f); });
      quietly(() => { fs.unlinkSync(d); fs.renameSync(real, d); });
      quietly(() => { fs.renameSync(d, real); fs.symlinkSync(outside + '/tree', d); });
      if (i === 20) process.stdout.write('ready\\n');
    }`;
  const child = spawn(process.execPath, ['-e', script, allowed, outside], { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`the racer exited with ${code}`)));
  });
  return child;
}

describe('file:// transfers against a racing symbolic link', () => {
  let work: string;
  let allowed: string;
  let outside: string;
  let racer: ChildProcess;
  let backend: FileStorageBackend;

  beforeAll(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), 'tesp-file-race-'));
    allowed = path.join(work, 'allowed');
    outside = path.join(work, 'outside');
    mkdirSync(path.join(allowed, 'd', 'tree'), { recursive: true });
    mkdirSync(path.join(outside, 'tree', 'tree'), { recursive: true });
    writeFileSync(path.join(allowed, 'f'), 'INSIDE');
    writeFileSync(path.join(allowed, 'd', 'secret.txt'), 'INSIDE');
    writeFileSync(path.join(allowed, 'd', 'tree', 'a.txt'), 'INSIDE');
    writeFileSync(path.join(outside, 'secret.txt'), 'OUTSIDE');
    writeFileSync(path.join(outside, 'tree', 'secret.txt'), 'OUTSIDE');
    writeFileSync(path.join(outside, 'tree', 'tree', 'a.txt'), 'OUTSIDE');
    writeFileSync(path.join(work, 'payload.txt'), 'PAYLOAD');
    backend = new FileStorageBackend([allowed]);
    racer = await startRacer(allowed, outside);
  });

  afterAll(() => {
    racer?.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
  });

  /** Runs a transfer; a refusal or a vanished link is an acceptable outcome, anything else is returned. */
  const tolerated = async <T>(transfer: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await transfer();
    } catch (err) {
      expect((err as Error).message).toMatch(/outside the allowed directories|no such file or directory|not a file|ENOENT|ENOTDIR/);
      return undefined;
    }
  };

  it(`reads no outside file as a FILE input, a stream or a DIRECTORY input (${ATTEMPTS} attempts each)`, async () => {
    const seen = new Set<string>();
    for (let i = 0; i < ATTEMPTS; i++) {
      const destination = path.join(work, `in-${i}`);
      if (await tolerated(() => backend.download(`file://${allowed}/f`, destination))) seen.add(readFileSync(destination, 'utf8'));
      const stream = await tolerated(() => backend.openRead(`${allowed}/d/secret.txt`));
      if (stream) {
        const chunks: Buffer[] = [];
        for await (const chunk of stream) chunks.push(chunk as Buffer);
        seen.add(Buffer.concat(chunks).toString());
      }
      const listed = await tolerated(() => backend.list(`${allowed}/d/tree`));
      for (const entry of listed ?? []) {
        const file = path.join(work, `dir-${i}-${entry.relativePath}`);
        if ((await tolerated(() => backend.download(entry.url, file))) !== undefined) seen.add(readFileSync(file, 'utf8'));
      }
    }
    expect([...seen].filter((content) => content !== 'INSIDE')).toEqual([]);
  });

  it(`writes no file or directory outside as a FILE or DIRECTORY output (${ATTEMPTS} attempts each)`, async () => {
    for (let i = 0; i < ATTEMPTS; i++) {
      await tolerated(() => backend.upload(path.join(work, 'payload.txt'), `file://${allowed}/d/out-${i}.txt`));
      await tolerated(() => backend.upload(path.join(work, 'payload.txt'), `${allowed}/d/made-${i}/nested/x.txt`));
    }
    expect(readdirSync(path.join(outside, 'tree')).sort()).toEqual(['secret.txt', 'tree']);
    expect(readdirSync(outside).sort()).toEqual(['secret.txt', 'tree']);
    expect(readFileSync(path.join(outside, 'tree', 'secret.txt'), 'utf8')).toBe('OUTSIDE');
  });

  it('creates an allowed directory that does not exist yet, with its missing parents, and nothing beside them', async () => {
    const later = path.join(work, 'later', 'results');
    const fresh = new FileStorageBackend([later]);
    await fresh.upload(path.join(work, 'payload.txt'), `${later}/a/b.txt`);
    expect(readFileSync(path.join(later, 'a', 'b.txt'), 'utf8')).toBe('PAYLOAD');
    await expect(fresh.upload(path.join(work, 'payload.txt'), `${work}/later/other/c.txt`)).rejects.toThrow(/outside the allowed directories/);
    expect(readdirSync(path.join(work, 'later'))).toEqual(['results']);
  });
});

import { filesOf, rootName } from './pulsar-job';

const manifest = [
  { path: 'out/a.txt', size: 3 },
  { path: 'out/sub/b.txt', size: 4 },
  { path: 'out/sub/c.log', size: 5 },
  { path: 'other/d.txt', size: 6 },
];

describe('which manifest files an output names', () => {
  it('a FILE output: its own path, or a clear failure', () => {
    expect(filesOf({ index: 0, url: 'http://h/a', type: 'FILE', path: '/out/a.txt' }, manifest, () => undefined)).toEqual([
      { rel: 'out/a.txt', containerPath: '/out/a.txt', url: 'http://h/a', size: 3 },
    ]);
    expect(() => filesOf({ index: 0, url: 'http://h/a', type: 'FILE', path: '/out/missing' }, manifest, () => undefined)).toThrow(/\/out\/missing does not exist/);
  });

  it('a DIRECTORY output: every file below it, at the matching URL below the output URL', () => {
    expect(filesOf({ index: 1, url: 's3://b/res/', type: 'DIRECTORY', path: '/out/sub' }, manifest, () => undefined).map((f) => [f.containerPath, f.url])).toEqual([
      ['/out/sub/b.txt', 's3://b/res/b.txt'],
      ['/out/sub/c.log', 's3://b/res/c.log'],
    ]);
  });

  it('a glob output: its matches below the prefix, and a note when nothing matches', () => {
    const notes: string[] = [];
    const glob = { index: 2, url: 'http://h/g', type: 'FILE' as const, path: '/out/**/*.txt', glob: { prefix: '/out' } };
    expect(filesOf(glob, manifest, (m) => notes.push(m)).map((f) => f.url)).toEqual(['http://h/g/a.txt', 'http://h/g/sub/b.txt']);
    expect(filesOf({ ...glob, path: '/out/*.csv' }, manifest, (m) => notes.push(m))).toEqual([]);
    expect(notes).toEqual(['outputs[2]: /out/*.csv matched no files']);
  });

  it('uploads a container path under root/', () => {
    expect(rootName('/in/x y.txt')).toBe('root/in/x y.txt');
  });
});

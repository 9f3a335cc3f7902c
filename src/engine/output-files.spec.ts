import { globMatcher } from './output-files';

describe('globMatcher', () => {
  it.each([
    ['out/*.txt', 'out/a.txt', true],
    ['out/*.txt', 'out/sub/a.txt', false],
    ['out/**/*.txt', 'out/a.txt', true],
    ['out/**/*.txt', 'out/x/y/a.txt', true],
    ['out/**', 'out/x/y', true],
    ['out/?.log', 'out/a.log', true],
    ['out/?.log', 'out/ab.log', false],
    ['out/[ab].log', 'out/b.log', true],
    ['out/[!ab].log', 'out/b.log', false],
    ['out/{x,y}.csv', 'out/y.csv', true],
    ['out/{x,y}.csv', 'out/z.csv', false],
    ['out/*', 'out/.hidden', true],
    ['out/a+b(1).txt', 'out/a+b(1).txt', true],
    ['out/a.txt', 'out/abtxt', false],
  ])('%s against %s is %s', (pattern, path, expected) => {
    expect(globMatcher(pattern)(path)).toBe(expected);
  });
});
